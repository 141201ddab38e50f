/* tier.c — see tier.h. The candidates, fastest first:
 *   1. sockmap: no TLS to carry (tcp, tls-passthrough); both sockets go into the BPF sockhash;
 *   2. ktls-splice: the client's session keys go to kernel TLS (handoff.h);
 *   3. userspace: ktlsd's record layer when the session allows it (rlayer.h), else OpenSSL's,
 *      or plain buffer forwarding.
 * Whether a listener may have a tier (its datapath field) and whether the kernel has it (the
 * startup probe) is datapath.h's; whether this connection's session allows it is the tier's. */
#include "conn.h"
#include "conn_log.h"
#include "conn_rl.h"
#include "datapath.h"
#include "dp_sockmap.h"
#include "dp_splice.h"
#include "dp_userspace.h"
#include "handoff.h"
#include "state.h"
#include "tier.h"

/* c is forwarding on dp: the handshake line says so, then the tier moves what is waiting. */
static void forward_on(struct conn *c, const struct dp_ops *dp)
{
	conn_set_tier(c, dp);
	conn_enter(c, CONN_FORWARDING);
	conn_report(c, CONN_END_OK, NULL);
}

void tier_choose(struct conn *c)
{
	if (!c->tls.ssl && datapath_sockmap_allowed(c->l->cfg) && dp_sockmap_attach(c) == 0) {
		forward_on(c, &dp_sockmap);
		c->dp->pump(c);
		return;
	}
	switch (handoff_try(c)) {
	case HANDOFF_WAIT:
	case HANDOFF_FATAL:
		return;
	case HANDOFF_DONE:
		forward_on(c, &dp_splice);
		handoff_release(c); /* after the line, which reads the SSL */
		break;
	case HANDOFF_USERSPACE:
		/* ktlsd's record layer takes over from OpenSSL's when it can (rlayer.h). */
		if (conn_rl_take_over(c)) {
			forward_on(c, &dp_userspace);
			conn_rl_free_ssl(c);
			conn_log(c, LOG_DEBUG,
				 "records by ktlsd's record layer from here (SSL freed)");
		} else {
			forward_on(c, &dp_userspace);
		}
		break;
	}
	c->dp->pump(c);
}
