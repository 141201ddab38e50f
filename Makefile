# ktlsd — TLS terminator with kernel TLS. `make help` lists the targets.
.DELETE_ON_ERROR:
.SUFFIXES:

B ?= build
CC ?= gcc

# make check: a separate tree built with ASan+UBSan. Before CFLAGS_BASE, whose -I$(B)/bpf must
# name that tree's BPF skeleton (else make check works only after a plain make).
ifeq ($(SAN),1)
B := build/san
CFLAGS := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all
LDFLAGS += -fsanitize=address,undefined
endif
# make coverage: another such tree, instrumented for gcov; -O0, so that each line's count is its
# own and not one the optimiser merged into another line's.
COV_B := build/cov
ifeq ($(COV),1)
B := $(COV_B)
CFLAGS := -O0 -g --coverage
LDFLAGS += --coverage
endif

PKGS := libssl libcrypto liburing jansson libbpf
CFLAGS_BASE := -std=gnu11 -D_GNU_SOURCE -Wall -Wextra -Werror -Wshadow -Wno-unused-parameter \
	-Iuser -Iinclude -I$(B) -I$(B)/bpf $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
CFLAGS ?= -O2 -g
LDLIBS := $(shell pkg-config --libs $(PKGS) 2>/dev/null || \
	echo -lssl -lcrypto -luring -ljansson -lbpf -lelf -lz) -lpthread

ifneq ($(V),1)
Q := @
msg = @printf '  %-8s %s\n' "$(1)" "$(2)";
endif

USER_SRC := $(filter-out user/main.c,$(wildcard user/*.c user/*.S))
USER_OBJ := $(patsubst %.S,$(B)/%.o,$(patsubst %.c,$(B)/%.o,$(USER_SRC)))
UNIT_SRC := $(wildcard tests/unit/test_*.c)
UNIT_BIN := $(UNIT_SRC:tests/unit/%.c=$(B)/tests/%)

all: $(B)/ktlsd $(B)/ktlsctl

# BPF (the sockmap tier: docs/datapath.md, docs/bpftool.md): vmlinux.h from the build machine's
# BTF, the programs compiled by clang, and a bpftool skeleton that user/bpfmap.c includes. All generated under $(B), never committed.
BTF ?= /sys/kernel/btf/vmlinux
BPF_ARCH := $(shell uname -m | sed -e 's/x86_64/x86/' -e 's/aarch64/arm64/')
BPF_SKEL := $(B)/bpf/ktlsd.skel.h

$(B)/bpf/vmlinux.h:
	$(call msg,BTF,$@)
	$(Q)test -r $(BTF) || { echo "error: $(BTF) is missing: this kernel was built without BTF" \
		"(CONFIG_DEBUG_INFO_BTF); the BPF programs need it. Build on a kernel with BTF or" \
		"pass BTF=/path/to/vmlinux" >&2; exit 1; }
	$(Q)mkdir -p $(@D)
	$(Q)bpftool btf dump file $(BTF) format c > $@

$(B)/bpf/%.bpf.o: bpf/%.bpf.c include/ktlsd_bpf.h $(B)/bpf/vmlinux.h
	$(call msg,BPF,$@)
	$(Q)clang -target bpf -O2 -g -D__TARGET_ARCH_$(BPF_ARCH) -Wall -Werror -I$(B)/bpf -Iinclude \
		-c $< -o $@

$(B)/bpf/%.skel.h: $(B)/bpf/%.bpf.o
	$(call msg,SKEL,$@)
	$(Q)bpftool gen skeleton $< name $(subst -,_,$*)_bpf > $@

# The only user of the skeleton; -MMD tracks it after the first build.
$(B)/user/bpfmap.o: $(BPF_SKEL)
.SECONDARY: $(B)/bpf/ktlsd.bpf.o

$(B)/%.o: %.c
	$(call msg,CC,$@)
	$(Q)mkdir -p $(@D)
	$(Q)$(CC) $(CFLAGS_BASE) $(CFLAGS) -MMD -MP -c $< -o $@

$(B)/ktlsd: $(B)/user/main.o $(USER_OBJ)
	$(call msg,LD,$@)
	$(Q)$(CC) $(LDFLAGS) $^ $(LDLIBS) -o $@

$(B)/ktlsctl: $(B)/tools/ktlsctl.o
	$(call msg,LD,$@)
	$(Q)$(CC) $(LDFLAGS) $^ -ljansson -o $@

$(B)/tests/test_%: $(B)/tests/unit/test_%.o $(USER_OBJ)
	$(call msg,LD,$@)
	$(Q)mkdir -p $(@D)
	$(Q)$(CC) $(LDFLAGS) $^ $(LDLIBS) -lcmocka -o $@

FIXTURES := $(B)/fixtures/.stamp
$(FIXTURES): tests/fixtures/gen.sh tests/fixtures/mkcert.sh $(wildcard tests/fixtures/gen-*.sh)
	$(call msg,GEN,$(@D))
	$(Q)rm -rf $(@D) && sh tests/fixtures/gen.sh $(@D)
	$(Q)touch $@

PYTEST := /usr/bin/python3 -m pytest -q -rs -p no:cacheprovider
TEST_ENV := KTLSD_BUILD=$(abspath $(B)) KTLSD_FIXTURES=$(abspath $(B)/fixtures)

# cmocka prints its summary on stderr: fold it into stdout for CI logs.
unit: deps-check $(UNIT_BIN) $(FIXTURES)
	$(Q)fail=0; for t in $(UNIT_BIN); do $(TEST_ENV) $$t 2>&1 || fail=1; done; exit $$fail

integration: deps-check all $(FIXTURES)
	$(Q)$(TEST_ENV) $(PYTEST) tests/integration 2>&1

# Every stage runs even when an earlier one fails, and says how long it took; exit 77 from the
# VM stage is a visible skip.
stage = echo "== $(1)"; t0=$$(date +%s); $(2); rc=$$?; \
	echo "== $(1): $$([ $$rc = 0 ] && echo ok || echo FAILED) in $$(( $$(date +%s) - t0 )) s"; \
	[ $$rc = 0 ] || fail=1;
# The first stage is make lint (a few seconds); the second checks that each target in make help
# works from a fresh clone under /tmp and that the VM guest sees such a tree (tests/fresh-clone.sh;
# a few seconds).
FRESH_CLONE_CHECK = bash tests/fresh-clone.sh 2>&1
# make -n runs a recipe that calls $(MAKE), as test's does; $(call dry,COMMAND) then prints
# COMMAND instead, so that make -n test shows the VM stage without booting anything.
dry = $(if $(findstring n,$(firstword -$(MAKEFLAGS))),echo '$(1)',$(1))
test: deps-check all $(UNIT_BIN) $(FIXTURES)
	$(Q)fail=0; \
	$(call stage,lint: clang-format and the include layers (make lint),$(MAKE) --no-print-directory lint) \
	$(call stage,make targets in a fresh clone (tests/fresh-clone.sh),$(call dry,$(FRESH_CLONE_CHECK))) \
	$(call stage,unit tests (cmocka),$(MAKE) --no-print-directory unit) \
	$(call stage,unit-test coverage of the connection code (make coverage),$(MAKE) --no-print-directory coverage) \
	$(call stage,integration tests (real daemon and clients),$(MAKE) --no-print-directory integration) \
	$(call stage,ASan+UBSan: unit and integration (make check),$(MAKE) --no-print-directory check) \
	$(call stage,valgrind memcheck: integration subset (make valgrind-ci),$(MAKE) --no-print-directory valgrind-ci) \
	$(call stage,fuzz targets $(FUZZ_CI_SECONDS) s each,$(MAKE) --no-print-directory fuzz FUZZ_SECONDS=$(FUZZ_CI_SECONDS)) \
	echo '== kTLS tests in QEMU (Debian 6.1 and 6.12 kernels, $(VMTEST_CI_MIB) MiB transfers)'; t0=$$(date +%s); \
		$(call dry,VMTEST_MIB=$(VMTEST_CI_MIB) $(VMTEST)); rc=$$?; \
		echo "== kTLS tests in QEMU: rc $$rc in $$(( $$(date +%s) - t0 )) s"; \
		if [ $$rc = 77 ]; then echo 'vmtest: SKIPPED (reason above)'; \
		elif [ $$rc != 0 ]; then fail=1; fi; \
	exit $$fail

check: deps-check
	$(Q)KTLSD_SANITIZED=1 $(MAKE) --no-print-directory SAN=1 unit integration

# make lint: every tracked C file as clang-format writes it (tools/lint/format.sh; make format
# rewrites them), the include layers of user/ (tools/lint/includes.py: no upward include, no
# cycle, no unused include, every module in one layer of tools/lint/layers.txt), and
# lint-selftest, which plants a violation of each kind in a copy and expects each one caught.
# Every part runs even when an earlier one fails. (No $(MAKE) in the recipe: make -n would then
# run it, not print it.)
LINT_PY := /usr/bin/python3
lint: deps-check
	$(Q)fail=0; \
	sh tools/lint/format.sh || fail=1; \
	$(LINT_PY) tools/lint/includes.py || fail=1; \
	$(LINT_PY) tools/lint/selftest.py || fail=1; \
	exit $$fail

lint-selftest:
	$(Q)$(LINT_PY) tools/lint/selftest.py

# make coverage: the unit tests built in $(COV_B) with gcov's instrumentation (COV=1) and run from
# zero counts, then the lines of COVERAGE_SRC they executed, per file and combined, from gcov's
# own counts (tools/coverage.py); fails when the combined share is below COVERAGE_MIN percent,
# or when a unit test fails. COVERAGE_SRC is the connection code (docs/architecture.md): every
# conn_*.c and dp_*.c there is, the handoff and the tier choice. make -n runs this recipe for its
# $(MAKE); dry makes it print the rest.
COVERAGE_SRC ?= $(wildcard user/conn.c user/conn_*.c user/dp_*.c user/handoff.c user/tier.c)
COVERAGE_MIN ?= 80
coverage: deps-check
	$(Q)$(call dry,find $(COV_B) -name \*.gcda -delete 2>/dev/null); \
	$(MAKE) --no-print-directory COV=1 unit; rc=$$?; \
	$(call dry,/usr/bin/python3 tools/coverage.py --build $(COV_B) --min $(COVERAGE_MIN) $(COVERAGE_SRC)) \
		|| rc=1; \
	exit $$rc

# The integration suite with every daemon under valgrind's memcheck: an error or a definite leak
# fails the test that started that daemon (tests/integration/conftest.py; false positives of
# valgrind itself are in tests/valgrind.supp). VALGRIND_TESTS picks tests (default: all).
VALGRIND_TESTS ?= tests/integration
valgrind: deps-check all $(FIXTURES)
	$(Q)KTLSD_VALGRIND=1 $(TEST_ENV) $(PYTEST) $(VALGRIND_TESTS) 2>&1

# make test's valgrind stage: the whole suite takes too long under memcheck on 2 cores, so this
# subset takes every daemon module end to end (docs/security.md says which and why).
I := tests/integration/
VALGRIND_CI_TESTS := $(I)test_daemon.py $(I)test_clients.py $(I)test_bad_input.py \
	$(I)test_idle.py $(I)test_metrics.py $(I)test_proxy_protocol.py $(I)test_control.py \
	$(I)test_certificates.py::test_gcp_cats_and_dogs_example \
	$(I)test_certificates.py::test_fifteen_certificates_on_one_listener \
	$(I)test_certificates.py::test_mtls_required $(I)test_certificates.py::test_mtls_optional \
	$(I)test_certificates.py::test_bad_certificate_inputs_are_config_errors \
	$(I)test_policies.py::test_scanner_finds_exactly_the_tls13_policy \
	$(I)test_policies.py::test_client_renegotiation_is_refused \
	$(I)test_reload.py::test_broken_config_is_refused_with_its_reason_and_the_old_one_serves \
	$(I)test_reload.py::test_a_listener_renamed_keeps_its_socket_and_a_moved_one_rebinds \
	$(I)test_backend_tls.py::test_verified_backend_byte_exact_both_ways \
	$(I)test_backend_tls.py::test_verification_failures_close_cleanly \
	$(I)test_backend_tls.py::test_proxy_header_goes_in_clear_before_the_client_hello \
	$(I)test_resumption.py::test_on_resumes_with_s_client_and_python \
	$(I)test_resumption.py::test_key_file_rotation_by_reload \
	$(I)test_passthrough.py::test_routes_exact_wildcard_and_default \
	$(I)test_passthrough.py::test_bulk_both_ways_is_byte_exact \
	$(I)test_passthrough.py::test_client_hello_one_byte_per_segment \
	$(I)test_sockmap.py::test_bpftool_shows_live_connections_and_counters \
	$(I)test_sockmap.py::test_early_bytes_before_the_handover_arrive_in_order \
	$(I)test_sockmap.py::test_half_close_each_way \
	$(I)test_sockmap.py::test_client_reset_resets_the_backend \
	$(I)test_sockmap.py::test_sigterm_with_live_connections_then_restart \
	$(I)test_privileges.py::test_daemon_runs_as_user_with_only_net_bind_service \
	$(I)test_hostile.py::test_malformed_and_oversized_client_hellos_are_refused_by_the_parser \
	$(I)test_hostile.py::test_a_flood_beyond_max_connections_is_refused_at_accept
valgrind-ci: deps-check
	$(Q)$(MAKE) --no-print-directory valgrind VALGRIND_TESTS='$(VALGRIND_CI_TESTS)'

# The guest scripts take $(B)/ktlsd and the fixtures (tests/vm/guest/*.sh, "# vm-files:").
# VMTEST_KERNELS=6.1 (or 6.12) boots only that kernel; the default is both, side by side.
VMTEST = $(TEST_ENV) bash tests/vm/run.sh $(VMTEST_KERNELS) 2>&1
# make test's VM stage moves 16 MiB each way per client and suite (a thousand records, every
# splice and record path) instead of make vmtest's 64: under TCG on 2 cores the two kernels'
# 64 MiB runs take over ten minutes each, most of make test's time.
VMTEST_CI_MIB ?= 16

vmtest: deps-check all $(FIXTURES)
	$(Q)$(VMTEST)

# make fuzz: each libFuzzer target for FUZZ_SECONDS (default 60), from its seed corpus in
# tests/fuzz/corpus/<target>; new inputs go to build/fuzz/corpus-<target>, crashes, leaks and
# timeouts to build/fuzz/artifacts-<target> (any there, or a non-zero exit, fails the target).
# make test runs each for FUZZ_CI_SECONDS.
FUZZ_SECONDS ?= 60
FUZZ_CI_SECONDS ?= 20
FUZZ_CFLAGS := -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all
FUZZ_TARGETS := config proxyproto sni ctl rlayer
fuzz_config_SRC := user/config.c user/hostname.c
fuzz_proxyproto_SRC := user/proxyproto.c
fuzz_sni_SRC := user/sni.c user/hostname.c
fuzz_ctl_SRC := $(USER_SRC)
fuzz_rlayer_SRC := user/rlayer.c user/ktls_keys.c

$(B)/fuzz/fuzz_%: tests/fuzz/fuzz_%.c $(wildcard user/*.[chS]) | $(BPF_SKEL)
	$(call msg,FUZZ,$@)
	$(Q)mkdir -p $(@D)
	$(Q)clang $(CFLAGS_BASE) $(FUZZ_CFLAGS) $< $($(notdir $@)_SRC) $(LDLIBS) -o $@

fuzz: deps-check $(FUZZ_TARGETS:%=$(B)/fuzz/fuzz_%)
	$(Q)for t in $(FUZZ_TARGETS); do \
		a=$(B)/fuzz/artifacts-$$t; rm -rf $$a; mkdir -p $(B)/fuzz/corpus-$$t $$a && \
		echo "== fuzz_$$t for $(FUZZ_SECONDS) s" && \
		$(B)/fuzz/fuzz_$$t -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=1536 \
			-print_final_stats=1 -artifact_prefix=$$a/ \
			$(B)/fuzz/corpus-$$t tests/fuzz/corpus/$$t > $(B)/fuzz/fuzz_$$t.log 2>&1; \
		rc=$$?; grep -aE '^#[0-9]+[[:space:]]+DONE|stat::number|stat::average|ERROR|SUMMARY' \
			$(B)/fuzz/fuzz_$$t.log; \
		if [ $$rc != 0 ] || [ -n "$$(ls -A $$a)" ]; then \
			echo "fuzz_$$t: failed (rc $$rc): see $(B)/fuzz/fuzz_$$t.log and $$a"; exit 1; fi; \
	done
	@echo 'fuzz: no crash, leak or timeout'

run: deps-check all
	$(Q)sh tools/demo.sh $(B)

deps:
	$(Q)sh tools/deps.sh install

# Every target that runs tests, the demo or the benchmark checks the packages first, so that it
# works as the first command in a fresh clone; once per top-level make (the sub-makes of test,
# check and valgrind-ci skip it).
deps-check:
ifeq ($(MAKELEVEL),0)
	$(Q)sh tools/deps.sh check
endif

# Binaries, the systemd unit, docs and an example config under $(DESTDIR)/usr/local; the example
# also becomes /etc/ktlsd/ktlsd.json (what the unit runs) unless that file exists.
install: all
	install -D -m 0755 $(B)/ktlsd $(DESTDIR)/usr/local/sbin/ktlsd
	install -D -m 0755 $(B)/ktlsctl $(DESTDIR)/usr/local/bin/ktlsctl
	install -D -m 0644 config/ktlsd.service $(DESTDIR)/usr/local/lib/systemd/system/ktlsd.service
	install -D -m 0644 config/ktlsd.example.json \
		$(DESTDIR)/usr/local/share/doc/ktlsd/examples/ktlsd.json
	install -m 0644 README.md docs/*.md $(DESTDIR)/usr/local/share/doc/ktlsd/
	install -d $(DESTDIR)/usr/local/share/doc/ktlsd/notes
	install -m 0644 docs/notes/*.md $(DESTDIR)/usr/local/share/doc/ktlsd/notes/
	install -d -m 0750 $(DESTDIR)/etc/ktlsd
	test -e $(DESTDIR)/etc/ktlsd/ktlsd.json || \
		install -m 0640 config/ktlsd.example.json $(DESTDIR)/etc/ktlsd/ktlsd.json
	@echo 'installed; put certificates in /etc/ktlsd/certs/, then: systemctl daemon-reload &&' \
		'systemctl enable --now ktlsd'

format:
	sh tools/lint/format.sh -i

clean:
	rm -rf build

help:
	@echo 'make            build build/ktlsd and build/ktlsctl'
	@echo 'make deps       install the Debian packages needed to build and test'
	@echo 'make run        demo: certificates, a backend and ktlsd on 127.0.0.1'
	@echo 'make test       lint, unit, coverage, integration, check, valgrind (subset), fuzz (short), VM (kTLS)'
	@echo 'make unit       cmocka unit tests only'
	@echo 'make integration  tests through the real daemon with real clients (root)'
	@echo 'make vmtest     kTLS tests in QEMU with Debian 6.1 and 6.12 kernels'
	@echo 'make check      unit + integration built with ASan+UBSan'
	@echo 'make lint       clang-format check, include layers of user/ (tools/lint/layers.txt), self-test'
	@echo 'make lint-selftest  plant a violation of each kind in a copy; the lint must catch each'
	@echo 'make coverage   unit tests under gcov: line coverage of COVERAGE_SRC, min COVERAGE_MIN %'
	@echo 'make valgrind   the integration suite with the daemon under valgrind memcheck'
	@echo 'make valgrind-ci  the subset of it that make test runs'
	@echo 'make fuzz       libFuzzer targets, FUZZ_SECONDS each (default 60)'
	@echo 'make bench      ktlsd vs HAProxy, nginx, stunnel → bench/results (BENCH_QUICK=1: smoke)'
	@echo 'make install    install binaries under $$(DESTDIR)/usr/local'
	@echo 'V=1             show full commands'

.PHONY: all unit integration test check lint lint-selftest coverage valgrind valgrind-ci vmtest fuzz \
	run deps deps-check install format clean help bench
-include $(shell find $(B) -name '*.d' 2>/dev/null)

$(B)/user/policy_data.o: user/policy_data.S data/elb-policies.json
	$(call msg,AS,$@)
	$(Q)mkdir -p $(@D)
	$(Q)$(CC) -c $< -o $@

# make bench: ktlsd against HAProxy, nginx and stunnel (bench/run.py; BENCH_QUICK=1 for a smoke
# run). Installs the peers and gnuplot itself (bench/deps.sh), so `make test` does not need them.
BENCH_CFLAGS := -std=gnu11 -D_GNU_SOURCE -O2 -g -Wall -Wextra -Werror
$(B)/bench/%: bench/%.c
	$(call msg,CC,$@)
	$(Q)mkdir -p $(@D)
	$(Q)$(CC) $(BENCH_CFLAGS) $< -lssl -lcrypto -o $@

bench: deps-check all $(B)/bench/tlsload $(B)/bench/sinkd
	$(Q)sh bench/deps.sh
	$(Q)/usr/bin/python3 bench/run.py $(B)
