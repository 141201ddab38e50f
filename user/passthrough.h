/* passthrough — the first phase of a tls-passthrough connection: read the client's ClientHello
 * (sni.c) without answering it, choose the backend by its SNI (route.c), and hand over to plain
 * forwarding with the ClientHello still in the client buffer, so the backend receives it first,
 * byte for byte. Bounded by timeouts.handshake_ms (conn_fsm.c) and by the parser's size limit. */
#ifndef KTLSD_PASSTHROUGH_H
#define KTLSD_PASSTHROUGH_H

struct conn;

/* Looks at what the client sent so far. Returns 1 when the backend is chosen (c->backend,
 * c->acct.sni and c->route set), 0 to read more, or -1 with why (static text) when the connection
 * must be closed: not TLS, a malformed or oversized ClientHello, the client closed first, or no
 * route and no default backend. */
int passthrough_step(struct conn *c, const char **why);

#endif
