/* tier — the choice of a connection's datapath tier, in one place: an ordered list of candidates,
 * fastest first, whose attach op each decides whether the listener's config, the startup probe
 * (datapath.h) and the connection's session allow it; the first that attaches wins, and
 * userspace takes the rest (docs/datapath.md, "How a tier is chosen"). */
#ifndef KTLSD_TIER_H
#define KTLSD_TIER_H

struct conn;

/* In CONN_TIER_SELECT: tries the candidates. On success c is FORWARDING on its tier (logged and
 * counted); a candidate may also ask to be called again (the kTLS handoff waiting for our last
 * handshake bytes), leaving c in TIER_SELECT, or close c. */
void tier_choose(struct conn *c);

#endif
