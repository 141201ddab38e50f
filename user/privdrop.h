/* privdrop — least privilege: once ktlsd has bound its listeners, opened the control socket and
 * the metrics listener, loaded and pinned its BPF objects and read its keys (all as root), it
 * becomes the configured "user"/"group" and keeps only the capabilities its running datapath
 * needs (docs/security.md says which and why):
 *
 *   CAP_NET_BIND_SERVICE   a reload may add a listener on a port below 1024
 *
 * Nothing else is kept: kernel TLS (TLS_TX/TLS_RX), splice and io_uring need no capability;
 * TCP_ULP "tls" needs CAP_NET_ADMIN only to autoload the tls module, which the startup probe has
 * done as root; sockmap/sockhash updates through a map fd opened before the drop need none (Linux
 * 5.19 and later, also with kernel.unprivileged_bpf_disabled; measured on 6.18). Files read after
 * the drop (the config, certificates and keys at reload, cert-set's writes) must be readable, and
 * for cert-set writable, by the user: no CAP_DAC_* is kept, because that would let a compromised
 * daemon read every file on the host. */
#ifndef KTLSD_PRIVDROP_H
#define KTLSD_PRIVDROP_H

#include <stdbool.h>
#include <sys/types.h>

#include "config.h"
#include "err.h"

struct privdrop_id {
	bool enabled; /* "user" is set */
	uid_t uid;
	gid_t gid;
};

/* Resolves cfg->user and cfg->group (names or numbers). Unknown names are errors in errs
 * ("CONFIG: user: ..."); returns 0 or -EINVAL. */
int privdrop_resolve(const struct config *cfg, struct privdrop_id *id,
		     struct cfg_errors *errs) __must_check;
/* Becomes id (supplementary groups cleared), keeps the capabilities above, sets no_new_privs.
 * Call while the process has one thread. Returns 0 or a negative errno, logged. Does nothing when
 * !id->enabled. */
int privdrop_apply(const struct privdrop_id *id) __must_check;

#endif
