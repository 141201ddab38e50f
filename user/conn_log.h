/* conn_log — what a connection writes to the log: one prefix for every line about it ("conn
 * peer=ADDR listener=NAME: ..."), and the formatter of its one handshake line
 * (docs/configuration.md, "Logging"). Formatting only: conn_report (conn.h) decides when the line
 * is due and counts it. */
#ifndef KTLSD_CONN_LOG_H
#define KTLSD_CONN_LOG_H

#include "log.h"

struct conn;

void conn_log_emit(const struct conn *c, enum log_level lvl, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* A line about c at level lvl, the arguments evaluated only when the level is logged. */
#define conn_log(c, lvl, ...)                                                                      \
	do {                                                                                       \
		if ((lvl) <= log_threshold)                                                        \
			conn_log_emit((c), (lvl), __VA_ARGS__);                                    \
	} while (0)

/* Logs a client's attempt to renegotiate: its first on each connection (c->tls.renegs counts them),
 * at most one line a second over all (ratelog.h). Both record layers call it. */
void conn_log_renegotiation(struct conn *c);

/* The handshake line: peer, listener, SNI, certificate, protocol, cipher, ALPN, client
 * certificate, tier, backend, duration, result (tls-passthrough: SNI, route, backend, server,
 * tier, duration, result). Never key material. */
void conn_log_handshake(const struct conn *c, const char *result);

#endif
