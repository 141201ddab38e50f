#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "datapath.h"
#include "log.h"

/* TCP_ULP "tls" needs a connected socket: make one over loopback and try. */
static int probe_tls_ulp(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t alen = sizeof(a);
	int lfd = -1, cfd = -1, afd = -1, ret = 0;

	lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	cfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (lfd < 0 || cfd < 0 || bind(lfd, (struct sockaddr *)&a, sizeof(a)) < 0 ||
	    listen(lfd, 1) < 0 || getsockname(lfd, (struct sockaddr *)&a, &alen) < 0 ||
	    connect(cfd, (struct sockaddr *)&a, sizeof(a)) < 0 ||
	    (afd = accept(lfd, NULL, NULL)) < 0)
		ret = -errno;
	else if (setsockopt(cfd, IPPROTO_TCP, TCP_ULP, "tls", sizeof("tls")) < 0)
		ret = -errno;
	if (lfd >= 0)
		close(lfd);
	if (cfd >= 0)
		close(cfd);
	if (afd >= 0)
		close(afd);
	return ret;
}

static struct datapath_caps current;

void datapath_probe(struct datapath_caps *caps)
{
	int r = probe_tls_ulp();

	memset(caps, 0, sizeof(*caps));
	caps->tier[CFG_DP_AUTO] = true;
	caps->tier[CFG_DP_USERSPACE] = true;
	caps->tier[CFG_DP_KTLS_SPLICE] = r == 0;
	if (r < 0)
		snprintf(caps->why[CFG_DP_KTLS_SPLICE], sizeof(caps->why[0]),
			 "the kernel has no TLS ULP (setsockopt TCP_ULP \"tls\": %s%s)", strerror(-r),
			 r == -ENOENT ? "; CONFIG_TLS is off or the tls module is not loaded" : "");
	/* Measured on 6.1 and 6.12 (docs/datapath.md): a socket with the TLS ULP cannot join a
	 * sockmap, and one in a sockmap cannot take TLS keys. */
	snprintf(caps->why[CFG_DP_KTLS_SOCKMAP], sizeof(caps->why[0]),
		 "kTLS sockets cannot take part in sockmap redirection on this kernel "
		 "(docs/datapath.md); use \"ktls-splice\"");
	snprintf(caps->why[CFG_DP_SOCKMAP], sizeof(caps->why[0]),
		 "this build has no BPF sockmap datapath yet");
	if (r == 0)
		log_info("datapath: kTLS available: tls listeners hand sessions to the kernel "
			 "(ktls-splice) when the negotiated cipher allows it");
	else
		log_info("datapath: kTLS not used: %s; tls listeners forward in userspace",
			 caps->why[CFG_DP_KTLS_SPLICE]);
	current = *caps;
}

bool datapath_ktls_allowed(const struct cfg_listener *l)
{
	return l->protocol == CFG_PROTO_TLS && current.tier[CFG_DP_KTLS_SPLICE] &&
	       (l->datapath == CFG_DP_AUTO || l->datapath == CFG_DP_KTLS_SPLICE);
}

void datapath_check(const struct config *cfg, const struct datapath_caps *caps,
		    struct cfg_errors *errs)
{
	for (size_t i = 0; i < cfg->n_listeners; i++) {
		const struct cfg_listener *l = &cfg->listeners[i];

		/* Features the config describes but this build does not carry out are refused,
		 * never ignored: a user asking for TLS to the backend must not get plaintext. */
		if (l->protocol == CFG_PROTO_PASSTHROUGH)
			config_errors_add(errs, "%s: listeners[%zu].protocol: \"tls-passthrough\" is "
						"not available in this build", cfg->path, i);
		if (l->backend_tls.enabled)
			config_errors_add(errs, "%s: listeners[%zu].backend_tls.enabled: TLS towards "
						"backends is not available in this build", cfg->path, i);
		if (l->proxy_protocol != CFG_PROXY_OFF)
			config_errors_add(errs, "%s: listeners[%zu].proxy_protocol: the PROXY protocol "
						"is not available in this build", cfg->path, i);
		if (!caps->tier[l->datapath])
			config_errors_add(errs, "%s: listeners[%zu].datapath: \"%s\" is not "
						"available: %s", cfg->path, i,
					  cfg_datapath_names[l->datapath], caps->why[l->datapath]);
	}
}
