/* conn_end.c — see conn_end.h. */
#include "conn_end.h"

#define ABORTED(n)                                                                                 \
	{                                                                                          \
		n, STATS_HS_ABORTED, false                                                         \
	}

static const struct conn_end_info ends[CONN_END_N] = {
	[CONN_END_CLOSED] = ABORTED("closed"),
	[CONN_END_OK] = { "ok", STATS_HS_OK, false },
	[CONN_END_NO_MEMORY] = ABORTED("out of memory"),
	[CONN_END_BACKEND_UNREACHABLE] = { "backend-unreachable", STATS_HS_ABORTED, true },
	[CONN_END_BACKEND_SOCKET] = ABORTED("backend-socket"),
	[CONN_END_PROXY_HEADER] = ABORTED("cannot build the PROXY header"),
	[CONN_END_HANDSHAKE_FAILED] = { "handshake failed", STATS_HS_FAILED, false },
	[CONN_END_CLIENT_GONE] = ABORTED("client closed the connection"),
	[CONN_END_HELLO_REFUSED] = ABORTED("ClientHello refused"),
	[CONN_END_BACKEND_TLS] = ABORTED("backend TLS handshake failed"),
	[CONN_END_CLIENT_RESET] = ABORTED("client reset"),
	[CONN_END_CLIENT_RECV] = ABORTED("client recv error"),
	[CONN_END_CLIENT_SEND] = ABORTED("client send failed"),
	[CONN_END_BACKEND_RESET] = ABORTED("backend reset"),
	[CONN_END_BACKEND_RECV] = ABORTED("backend recv error"),
	[CONN_END_BACKEND_SEND] = ABORTED("backend send failed"),
	[CONN_END_CLOSE_TIMEOUT] =
	    ABORTED("close timeout: the client took none of the last records"),
	[CONN_END_HELLO_TIMEOUT] = { "client hello timeout", STATS_HS_TIMEOUT, false },
	[CONN_END_HANDSHAKE_TIMEOUT] = { "handshake timeout", STATS_HS_TIMEOUT, false },
	[CONN_END_IDLE_TIMEOUT] = ABORTED("idle timeout"),
	[CONN_END_DRAIN_DEADLINE] = ABORTED("drain deadline"),
	[CONN_END_SHUTDOWN] = ABORTED("shutdown"),
	[CONN_END_KTLS_HALFWAY] = ABORTED("kTLS install failed half-way"),
	[CONN_END_CLIENT_TLS] = ABORTED("client TLS error"),
	[CONN_END_TLS_WRITE] = ABORTED("TLS write error"),
	[CONN_END_BACKEND_TLS_ERROR] = ABORTED("backend TLS error"),
	[CONN_END_BACKEND_TLS_WRITE] = ABORTED("backend TLS write error"),
	[CONN_END_CLIENT_BAD_RECORD] = ABORTED("client record failed authentication"),
	[CONN_END_CLIENT_KTLS_RECV] = ABORTED("client kTLS receive failed"),
	[CONN_END_CLIENT_RECV_FAILED] = ABORTED("client receive failed"),
	[CONN_END_BACKEND_RECV_FAILED] = ABORTED("backend receive failed"),
	[CONN_END_CLIENT_ALERT] = ABORTED("client alert"),
	[CONN_END_CLIENT_KEY_UPDATE] = ABORTED("client KeyUpdate"),
	[CONN_END_UNEXPECTED_RECORD] = ABORTED("unexpected client record"),
	[CONN_END_SOCKMAP_BACKLOG] = ABORTED("sockmap backlog limit"),
	[CONN_END_CLIENT_SOCKET] = ABORTED("client socket error"),
	[CONN_END_BACKEND_SOCKET_ERROR] = ABORTED("backend socket error"),
};

const struct conn_end_info *conn_end_info(enum conn_end e)
{
	return &ends[e < CONN_END_N ? e : CONN_END_CLOSED];
}
