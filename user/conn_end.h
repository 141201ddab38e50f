/* conn_end — how a connection ended, one name per outcome. The handshake line's result= and the
 * "closed: ..." line print the name, the handshake counters take their result from the outcome's
 * class, and a failure's metric label (ktlsd_handshake_failures_total{reason}) is its name
 * (docs/metrics.md): all from this one table. A few outcomes carry a detail instead of their name
 * in the handshake line (OpenSSL's error, what was wrong with a ClientHello or with the backend's
 * handshake), passed to conn_report. */
#ifndef KTLSD_CONN_END_H
#define KTLSD_CONN_END_H

#include <stdbool.h>

#include "stats.h"

enum conn_end {
	CONN_END_CLOSED, /* a clean end: both sides finished, or the client closed after a
			  * complete handshake */
	CONN_END_OK,	 /* not an end: the report of a connection that goes on forwarding */
	CONN_END_NO_MEMORY,
	CONN_END_BACKEND_UNREACHABLE, /* every server of the backend refused or timed out */
	CONN_END_BACKEND_SOCKET,      /* socket(2) for the backend failed */
	CONN_END_PROXY_HEADER,
	CONN_END_HANDSHAKE_FAILED, /* detail: OpenSSL's error */
	CONN_END_CLIENT_GONE,	   /* the client closed or reset during its handshake */
	CONN_END_HELLO_REFUSED,	   /* tls-passthrough: detail says what was wrong */
	CONN_END_BACKEND_TLS,	   /* the backend's handshake failed: detail says how */
	CONN_END_CLIENT_RESET,
	CONN_END_CLIENT_RECV,
	CONN_END_CLIENT_SEND,
	CONN_END_BACKEND_RESET,
	CONN_END_BACKEND_RECV,
	CONN_END_BACKEND_SEND,
	CONN_END_CLOSE_TIMEOUT,
	CONN_END_HELLO_TIMEOUT,
	CONN_END_HANDSHAKE_TIMEOUT,
	CONN_END_IDLE_TIMEOUT,
	CONN_END_DRAIN_DEADLINE,
	CONN_END_SHUTDOWN,
	CONN_END_KTLS_HALFWAY,
	CONN_END_CLIENT_TLS, /* a record of the client's failed (ktlsd's or OpenSSL's records) */
	CONN_END_TLS_WRITE,
	CONN_END_BACKEND_TLS_ERROR,
	CONN_END_BACKEND_TLS_WRITE,
	CONN_END_CLIENT_BAD_RECORD, /* kTLS: a record failed authentication */
	CONN_END_CLIENT_KTLS_RECV,
	CONN_END_CLIENT_RECV_FAILED, /* kTLS: splice from the client failed */
	CONN_END_BACKEND_RECV_FAILED,
	CONN_END_CLIENT_ALERT,
	CONN_END_CLIENT_KEY_UPDATE,
	CONN_END_UNEXPECTED_RECORD,
	CONN_END_SOCKMAP_BACKLOG,
	CONN_END_CLIENT_SOCKET,
	CONN_END_BACKEND_SOCKET_ERROR,
	CONN_END_N
};

struct conn_end_info {
	const char *name;
	enum stats_hs hs;     /* how a TLS handshake that ended so is counted */
	bool backend_failure; /* counted in ktlsd_backend_failures_total */
};

const struct conn_end_info *conn_end_info(enum conn_end e);

static inline const char *conn_end_name(enum conn_end e)
{
	return conn_end_info(e)->name;
}

#endif
