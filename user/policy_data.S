/* The ELB security-policy table (data/elb-policies.json), linked into the binary as a
 * NUL-terminated string so the daemon needs no data files at run time. */
	.section .rodata
	.global policy_data_json
	.type policy_data_json, @object
policy_data_json:
	.incbin "data/elb-policies.json"
	.byte 0
	.size policy_data_json, . - policy_data_json
	.section .note.GNU-stack, "", @progbits
