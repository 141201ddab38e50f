#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "bpfmap.h"
#include "datapath.h"
#include "err.h"
#include "ktls.h"
#include "ktls_sockmap.h"
#include "log.h"

/* Tries the kernel's TLS on a connected loopback socket (TCP_ULP needs an established one): with
 * cipher KTLS_CIPHER_NONE only the ULP, else the ULP and TLS_TX with a throwaway key, through the
 * same ktls_install() connections use. Returns 0 or a negative errno. */
static int probe_ktls(enum ktls_cipher cipher)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	struct ktls_keys keys = { .version = TLS1_3_VERSION, .cipher = cipher };
	struct ktls_seq seq = { 0 };
	enum ktls_state state;
	socklen_t alen = sizeof(a);
	int lfd = -1, cfd = -1, afd = -1, ret = 0;
	char why[256];

	lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	cfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (lfd < 0 || cfd < 0 || bind(lfd, (struct sockaddr *)&a, sizeof(a)) < 0 ||
	    listen(lfd, 1) < 0 || getsockname(lfd, (struct sockaddr *)&a, &alen) < 0 ||
	    connect(cfd, (struct sockaddr *)&a, sizeof(a)) < 0 ||
	    (afd = accept(lfd, NULL, NULL)) < 0)
		ret = -errno;
	else if (cipher == KTLS_CIPHER_NONE)
		ret = setsockopt(cfd, IPPROTO_TCP, TCP_ULP, "tls", sizeof("tls")) < 0 ? -errno : 0;
	else
		ret =
		    ktls_install(cfd, &keys, &seq, KTLS_INSTALL_TX_ONLY, &state, why, sizeof(why));
	if (lfd >= 0)
		close(lfd);
	if (cfd >= 0)
		close(cfd);
	if (afd >= 0)
		close(afd);
	return ret;
}

static struct datapath_caps current;

/* The sockmap tier works when the programs load and attach and a loopback connection relays
 * through the sockhash both ways (bpfmap_selftest). The objects stay loaded for the daemon. */
static void probe_sockmap(struct datapath_caps *caps)
{
	char why[160] = "";
	int r = bpfmap_load(why, sizeof(why));

	if (r == 0)
		r = bpfmap_selftest(why, sizeof(why));
	caps->tier[CFG_DP_SOCKMAP] = r == 0;
	if (r == 0) {
		log_info("datapath: BPF sockmap available: tcp and tls-passthrough listeners "
			 "forward in the kernel (sockmap)");
		return;
	}
	snprintf(caps->why[CFG_DP_SOCKMAP], sizeof(caps->why[0]), "%s", why);
	log_info("datapath: BPF sockmap not used: %s", why);
}

void datapath_probe(struct datapath_caps *caps)
{
	static const enum ktls_cipher ciphers[] = { KTLS_AES_GCM_128, KTLS_AES_GCM_256,
						    KTLS_CHACHA20_POLY1305 };
	char have[128] = "";
	int r = probe_ktls(KTLS_CIPHER_NONE);

	memset(caps, 0, sizeof(*caps));
	for (size_t i = 0; r == 0 && i < ARRAY_SIZE(ciphers); i++) {
		int rc = probe_ktls(ciphers[i]);

		if (rc == 0) {
			caps->ktls_ciphers |= 1u << ciphers[i];
			snprintf(have + strlen(have), sizeof(have) - strlen(have), "%s%s",
				 have[0] ? ", " : "", ktls_cipher_name(ciphers[i]));
		} else {
			log_warn("datapath: the kernel's TLS cannot use %s (%s): such connections "
				 "stay in userspace",
				 ktls_cipher_name(ciphers[i]), strerror(-rc));
		}
	}
	if (r == 0 && !caps->ktls_ciphers)
		r = -ENOPROTOOPT;
	caps->tier[CFG_DP_AUTO] = true;
	caps->tier[CFG_DP_USERSPACE] = true;
	caps->tier[CFG_DP_KTLS_SPLICE] = r == 0;
	if (r < 0)
		snprintf(caps->why[CFG_DP_KTLS_SPLICE], sizeof(caps->why[0]),
			 r == -ENOPROTOOPT
			     ? "the kernel's TLS supports none of the AEAD ciphers%s%s"
			     : "the kernel has no TLS ULP (setsockopt TCP_ULP \"tls\": %s%s)",
			 r == -ENOPROTOOPT ? "" : strerror(-r),
			 r == -ENOENT ? "; CONFIG_TLS is off or the tls module is not loaded" : "");
	probe_sockmap(caps);
	if (r == 0)
		log_info("datapath: kTLS available (%s): tls listeners hand sessions to the kernel "
			 "(ktls-splice) when the negotiated cipher allows it",
			 have);
	else
		log_info("datapath: kTLS not used: %s; tls listeners forward in userspace",
			 caps->why[CFG_DP_KTLS_SPLICE]);
	/* Measured, not assumed: on 6.1 and 6.12 a socket with the TLS ULP cannot join a sockmap
	 * and one in a sockmap cannot take TLS keys (docs/notes/ktls-sockmap.md). No build has
	 * the tier yet, so it stays unavailable either way; the reason says which case this
	 * kernel is. */
	if (r == 0) {
		ktls_sockmap_probe(caps->why[CFG_DP_KTLS_SOCKMAP], sizeof(caps->why[0]));
		log_info(
		    "datapath: ktls-sockmap not available: %s; kTLS connections use ktls-splice",
		    caps->why[CFG_DP_KTLS_SOCKMAP]);
	} else {
		snprintf(caps->why[CFG_DP_KTLS_SOCKMAP], sizeof(caps->why[0]),
			 "it needs kTLS, which this kernel lacks");
	}
	current = *caps;
}

void datapath_set_caps(const struct datapath_caps *caps)
{
	current = *caps;
}

bool datapath_ktls_cipher_ok(enum ktls_cipher c)
{
	return current.ktls_ciphers & (1u << c);
}

bool datapath_sockmap_allowed(const struct cfg_listener *l)
{
	return l->protocol != CFG_PROTO_TLS && current.tier[CFG_DP_SOCKMAP] &&
	       (l->datapath == CFG_DP_AUTO || l->datapath == CFG_DP_SOCKMAP);
}

bool datapath_ktls_allowed(const struct cfg_listener *l)
{
	return l->protocol == CFG_PROTO_TLS && !l->backend_tls.enabled &&
	       current.tier[CFG_DP_KTLS_SPLICE] &&
	       (l->datapath == CFG_DP_AUTO || l->datapath == CFG_DP_KTLS_SPLICE);
}

void datapath_check(const struct config *cfg, const struct datapath_caps *caps,
		    struct cfg_errors *errs)
{
	for (size_t i = 0; i < cfg->n_listeners; i++) {
		const struct cfg_listener *l = &cfg->listeners[i];

		/* TLS towards the backend is done by OpenSSL in userspace: a tier that would hand
		 * the client's session to the kernel cannot carry it. */
		if (l->backend_tls.enabled && l->datapath != CFG_DP_AUTO &&
		    l->datapath != CFG_DP_USERSPACE)
			config_errors_add(
			    errs,
			    "%s: listeners[%zu].datapath: \"%s\" cannot carry "
			    "backend_tls (TLS towards the backend runs in userspace); "
			    "use \"auto\" or \"userspace\"",
			    cfg->path, i, cfg_datapath_names[l->datapath]);

		if (!caps->tier[l->datapath])
			config_errors_add(errs,
					  "%s: listeners[%zu].datapath: \"%s\" is not "
					  "available: %s",
					  cfg->path, i, cfg_datapath_names[l->datapath],
					  caps->why[l->datapath]);
	}
}
