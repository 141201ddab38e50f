/* config — the JSON config file turned into an immutable, reference-counted snapshot.
 *
 * Every field is described once, in the tables of config.c (key, type, bounds, default). Loading
 * collects every problem, each as "FILE: JSON.PATH: reason", so `ktlsd --check` can print them all;
 * a snapshot is only returned when there are none. Paths in the file are resolved against the
 * config file's directory. */
#ifndef KTLSD_CONFIG_H
#define KTLSD_CONFIG_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "err.h"
#include "ktlsd_bpf.h"

enum cfg_protocol { CFG_PROTO_TLS, CFG_PROTO_TCP, CFG_PROTO_PASSTHROUGH };
/* A listener's datapath: auto, or one tier forced, numbered as the tiers (enum ktlsd_tier). */
enum cfg_datapath {
	CFG_DP_AUTO = KTLSD_TIER_NONE,
	CFG_DP_USERSPACE = KTLSD_TIER_USERSPACE,
	CFG_DP_KTLS_SPLICE = KTLSD_TIER_KTLS_SPLICE,
	CFG_DP_KTLS_SOCKMAP = KTLSD_TIER_KTLS_SOCKMAP,
	CFG_DP_SOCKMAP = KTLSD_TIER_SOCKMAP,
};
_Static_assert(CFG_DP_SOCKMAP + 1 == KTLSD_TIER_N, "a datapath for every tier");
enum cfg_client_auth { CFG_CAUTH_NONE, CFG_CAUTH_OPTIONAL, CFG_CAUTH_REQUIRED };
enum cfg_proxy_protocol { CFG_PROXY_OFF, CFG_PROXY_V1, CFG_PROXY_V2 };
enum cfg_balance { CFG_BALANCE_ROUND_ROBIN, CFG_BALANCE_FIRST };
enum cfg_keyperm { CFG_KEYPERM_REFUSE, CFG_KEYPERM_WARN };

extern const char *const cfg_protocol_names[];
extern const char *const cfg_datapath_names[];

struct cfg_addr {
	struct sockaddr_storage ss;
	socklen_t len;
	char text[80]; /* as written in the file, for logs */
};

struct cfg_cert {
	char *name;
	char *cert; /* resolved paths */
	char *key;
	char **domains;
	size_t n_domains;
};

struct cfg_ca {
	char *name;
	char *file;
	char *crl; /* NULL when absent */
};

struct cfg_backend {
	char *name;
	struct cfg_addr *servers;
	size_t n_servers;
	int balance; /* enum cfg_balance */
};

struct cfg_route {
	char *sni;
	char *backend_name;
	size_t backend;
};

struct cfg_policy {
	char *name;
	char **versions;
	size_t n_versions;
	char **ciphers;
	size_t n_ciphers;
	char **ciphersuites;
	size_t n_ciphersuites;
	char **groups;
	size_t n_groups;
};

struct cfg_listener {
	char *name;
	struct cfg_addr bind;
	int protocol; /* enum cfg_protocol */
	char *security_policy;
	char **cert_names;
	size_t n_certs;
	size_t *certs; /* indices into config.certs, resolved */
	struct {
		int mode; /* enum cfg_client_auth */
		char *ca_name;
		ssize_t ca; /* index into config.cas or -1 */
		uint32_t depth;
	} client_auth;
	char **alpn;
	size_t n_alpn;
	char *backend_name;
	size_t backend;
	struct {
		bool enabled;
		bool verify;
		char *ca_file;
		char *sni;
		char *security_policy;
	} backend_tls;
	int proxy_protocol; /* enum cfg_proxy_protocol */
	int datapath;	    /* enum cfg_datapath */
	bool session_resumption;
	struct {
		char *key_file; /* NULL: generated keys, rotated every rotate_s */
		uint32_t rotate_s;
		uint32_t lifetime_s;
	} session_tickets;
	struct {
		uint32_t client_hello_ms; /* accept to the whole ClientHello */
		uint32_t handshake_ms;
		uint32_t close_ms; /* to deliver the last records (an alert, close_notify) */
		uint32_t idle_ms;
		uint32_t connect_ms;
	} timeouts;
	uint32_t max_connections;
	uint32_t max_certificates;
	struct cfg_route *routes;
	size_t n_routes;
};

struct config {
	atomic_int refs;
	char *path;
	char *dir;
	struct cfg_listener *listeners;
	size_t n_listeners;
	struct cfg_cert *certs;
	size_t n_certs;
	struct cfg_ca *cas;
	size_t n_cas;
	struct cfg_backend *backends;
	size_t n_backends;
	struct cfg_policy *policies;
	size_t n_policies;
	uint32_t workers;
	uint32_t drain_timeout_ms;
	struct {
		char *socket;
	} control;
	struct {
		bool enabled;
		struct cfg_addr bind;
	} metrics;
	struct {
		char *pin_path;
	} bpf;
	/* Limits over all listeners (docs/security.md). */
	struct {
		uint32_t max_connections;
		uint32_t max_handshakes; /* in progress at once */
		struct {
			uint32_t rate; /* new connections per second; 0 = off */
			uint32_t burst;
			uint32_t max_handshakes;  /* in progress at once; 0 = off */
			uint32_t max_connections; /* open at once; 0 = off */
			uint32_t table_size;	  /* sources tracked (restart to change) */
		} per_source;
		uint64_t sockmap_backlog; /* bytes waiting in the kernel, all sockmap connections */
	} limits;
	char *user; /* drop to this user once set up; NULL = stay who started ktlsd */
	char *group;
	int key_file_permissions; /* enum cfg_keyperm */
};

/* Problems found while loading, each a full "FILE: PATH: reason" line. */
struct cfg_errors {
	char **msgs;
	size_t n;
};

/* Loads and validates PATH. On success *out holds a snapshot with one reference and errs is empty.
 * On failure returns a negative errno (-ENOMEM when an allocation failed, which is reported like
 * any other problem: "FILE: PATH: out of memory") and errs lists every problem (the caller frees
 * it). Nothing is left allocated on failure. */
int config_load(const char *path, struct config **out, struct cfg_errors *errs) __must_check;
void config_errors_add(struct cfg_errors *errs, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void config_errors_free(struct cfg_errors *errs);

struct config *config_get(struct config *c);
void config_put(struct config *c); /* accepts NULL; frees on the last reference */

const struct cfg_listener *config_listener_by_name(const struct config *c, const char *name);

/* Test hook, like ktls_set_ops in ktls.h: never set outside unit tests. -1 (the default): off.
 * N >= 0: the next N allocations of config_load and config_errors_add succeed, the one after
 * fails as if memory had run out, and the hook is off again (-1). Not thread-safe. */
extern int config_alloc_fail_after;

#endif
