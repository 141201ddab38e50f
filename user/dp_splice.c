/* dp_splice — the ktls-splice tier: once the session keys are in the kernel (TLS_TX and TLS_RX on
 * the client socket), bytes move client ↔ backend with splice() through a pipe per direction and
 * never enter ktlsd's memory.
 *
 * Readiness comes from io_uring (one-shot polls, one per socket and direction); the splices are
 * non-blocking calls made on readiness, so no io-wq thread ever sleeps on an idle connection.
 * Each direction loops: socket → pipe while the pipe has room, pipe → socket while it holds
 * bytes; a full destination parks the direction on POLLOUT, an empty source on POLLIN (only when
 * the pipe is empty is EAGAIN from the source unambiguous, see move()).
 *
 * kTLS gives the client's non-data records to recvmsg() only: splice() then fails with EINVAL and
 * read_control() takes the record. close_notify ends the client's direction like a FIN; any other
 * alert ends the connection; a TLS 1.3 KeyUpdate cannot be followed by kernels before 6.14, so the
 * connection closes cleanly with a log line. EBADMSG means a record failed authentication: the
 * session is dead both ways. Towards the client, the backend's FIN becomes close_notify (sent as a
 * kTLS alert record) and a FIN. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <linux/tls.h>

#include "conn.h"
#include "conn_log.h"
#include "dp_splice.h"
#include "err.h"
#include "handoff.h"
#include "state.h"
#include "tls_wire.h"

#define PIPE_SIZE (256u << 10)

/* One direction: src socket → pipe → dst socket. */
struct splice_dir {
	int pipe[2];
	uint32_t fill; /* bytes in the pipe */
	uint32_t cap;
	bool src_eof;
};

struct splice_state {
	struct splice_dir c2b, b2c;
};

/* Ops: OP_DP1 client POLLIN, OP_DP2 client POLLOUT, OP_DP3 backend POLLIN, OP_DP4 backend POLLOUT.
 */

static int dir_init(struct splice_dir *d)
{
	if (pipe2(d->pipe, O_CLOEXEC | O_NONBLOCK) < 0)
		return -errno;
	/* A bigger pipe moves more per wakeup; the default (64 KiB) is fine if this is refused. */
	int sz = fcntl(d->pipe[1], F_SETPIPE_SZ, PIPE_SIZE);

	d->cap = sz > 0 ? (uint32_t)sz : 65536u;
	return 0;
}

static void dir_close(struct splice_dir *d)
{
	if (d->pipe[0] >= 0)
		close(d->pipe[0]);
	if (d->pipe[1] >= 0)
		close(d->pipe[1]);
}

/* The client's next record is not application data: take it with recvmsg and act on it.
 * Returns 0 after close_notify (the client's direction ended), negative when the connection must
 * close (the reason is set). */
static int read_control(struct conn *c)
{
	uint8_t data[64], cbuf[CMSG_SPACE(sizeof(uint8_t))];
	struct iovec iov = { .iov_base = data, .iov_len = sizeof(data) };
	struct msghdr msg = { .msg_iov = &iov,
			      .msg_iovlen = 1,
			      .msg_control = cbuf,
			      .msg_controllen = sizeof(cbuf) };
	struct cmsghdr *cm;
	uint8_t type = 0;
	ssize_t n = recvmsg(c->cfd, &msg, MSG_DONTWAIT);

	if (n < 0) {
		conn_log(c, LOG_INFO, "kTLS recvmsg: %s", strerror(errno));
		conn_close(c, errno == EBADMSG ? CONN_END_CLIENT_BAD_RECORD
					       : CONN_END_CLIENT_KTLS_RECV);
		return -EPROTO;
	}
	cm = CMSG_FIRSTHDR(&msg);
	if (cm && cm->cmsg_level == SOL_TLS && cm->cmsg_type == TLS_GET_RECORD_TYPE)
		type = *(uint8_t *)CMSG_DATA(cm);
	if (type == TLS_CT_ALERT && n >= 2 && data[1] == TLS_ALERT_CLOSE_NOTIFY)
		return 0;
	if (type == TLS_CT_ALERT && n >= 2) {
		conn_log(c, LOG_INFO, "client sent alert %u (level %u)", data[1], data[0]);
		conn_close(c, CONN_END_CLIENT_ALERT);
	} else if (type == TLS_CT_HANDSHAKE && n >= 1 && data[0] == TLS_HS_KEY_UPDATE) {
		conn_log(c, LOG_INFO,
			 "client sent a TLS 1.3 KeyUpdate; the kernel's TLS cannot follow a key "
			 "change before Linux 6.14, closing");
		conn_close(c, CONN_END_CLIENT_KEY_UPDATE);
	} else {
		conn_log(c, LOG_INFO, "unexpected TLS record type %u after handoff", type);
		conn_close(c, CONN_END_UNEXPECTED_RECORD);
	}
	return -EPROTO;
}

/* Moves what it can from src to dst; returns false once the connection is closing. */
static bool move(struct conn *c, struct splice_dir *d, bool c2b)
{
	int src = c2b ? c->cfd : c->bfd, dst = c2b ? c->bfd : c->cfd;
	unsigned op_in = c2b ? OP_DP1 : OP_DP3, op_out = c2b ? OP_DP4 : OP_DP2;
	bool progress = true;
	ssize_t n;

	while (progress) {
		progress = false;
		if (!d->src_eof && d->fill < d->cap && !(c->inflight & (1u << op_in))) {
			n = splice(src, NULL, d->pipe[1], NULL, d->cap - d->fill,
				   SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
			if (n > 0) {
				d->fill += (uint32_t)n;
				c->active_ms = c->env->now_ms;
				progress = true;
			} else if (n == 0) {
				d->src_eof = true;
			} else if (errno == EAGAIN) {
				/* With bytes in the pipe, EAGAIN may mean the pipe is full:
				 * draining it below decides. Empty pipe: the socket is empty. */
				if (d->fill == 0)
					conn_post_poll(c, src, POLLIN | POLLRDHUP, op_in);
			} else if (c2b && errno == EINVAL) {
				if (read_control(c) < 0)
					return false;
				d->src_eof = true;
			} else {
				conn_log(c, LOG_DEBUG, "splice %s→pipe: %s",
					 c2b ? "client" : "backend", strerror(errno));
				conn_close(c, c2b ? (errno == EBADMSG ? CONN_END_CLIENT_BAD_RECORD
								      : CONN_END_CLIENT_RECV_FAILED)
						  : CONN_END_BACKEND_RECV_FAILED);
				return false;
			}
		}
		if (d->fill && !(c->inflight & (1u << op_out))) {
			n = splice(d->pipe[0], NULL, dst, NULL, d->fill,
				   SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
			if (n > 0) {
				d->fill -= (uint32_t)n;
				*(c2b ? &c->bytes_c2b : &c->bytes_b2c) += (uint64_t)n;
				progress = true;
			} else if (n < 0 && errno == EAGAIN) {
				conn_post_poll(c, dst, POLLOUT, op_out);
			} else {
				bool reset = errno == ECONNRESET || errno == EPIPE;

				conn_close(
				    c,
				    c2b ? (reset ? CONN_END_BACKEND_RESET : CONN_END_BACKEND_SEND)
					: (reset ? CONN_END_CLIENT_RESET : CONN_END_CLIENT_SEND));
				return false;
			}
		}
	}
	return true;
}

/* close_notify as a kTLS alert record: level warning (1), description close_notify (0). */
static void send_close_notify(struct conn *c)
{
	uint8_t alert[2] = { TLS_ALERT_LEVEL_WARNING, TLS_ALERT_CLOSE_NOTIFY };
	uint8_t cbuf[CMSG_SPACE(sizeof(uint8_t))];
	struct iovec iov = { .iov_base = alert, .iov_len = sizeof(alert) };
	struct msghdr msg = { .msg_iov = &iov,
			      .msg_iovlen = 1,
			      .msg_control = cbuf,
			      .msg_controllen = sizeof(cbuf) };
	struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);

	cm->cmsg_level = SOL_TLS;
	cm->cmsg_type = TLS_SET_RECORD_TYPE;
	cm->cmsg_len = CMSG_LEN(sizeof(uint8_t));
	*CMSG_DATA(cm) = TLS_CT_ALERT;
	/* Best effort: if the socket buffer is full the client gets the FIN alone. */
	if (sendmsg(c->cfd, &msg, MSG_DONTWAIT | MSG_NOSIGNAL) < 0)
		conn_log(c, LOG_DEBUG, "close_notify not sent: %s", strerror(errno));
}

static void pump(struct conn *c)
{
	struct splice_state *st = c->dp_data;

	if (!move(c, &st->c2b, true) || !move(c, &st->b2c, false))
		return;
	if (st->c2b.src_eof && !st->c2b.fill)
		conn_shutdown_wr(c, false);
	if (st->b2c.src_eof && !st->b2c.fill && !(c->flags & CF_C_SHUT)) {
		send_close_notify(c);
		conn_shutdown_wr(c, true);
	}
	if (conn_both_done(c))
		conn_close(c, CONN_END_CLOSED);
}

static void release(struct conn *c)
{
	struct splice_state *st = c->dp_data;

	if (!st)
		return;
	dir_close(&st->c2b);
	dir_close(&st->b2c);
	free(st);
	c->dp_data = NULL;
}

static int set_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);

	return fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0 ? -errno : 0;
}

/* Sets up the pipes: 0 or -errno. */
static int make_pipes(struct conn *c)
{
	struct splice_state *st = calloc(1, sizeof(*st));
	int ret = 0;

	ENSURE(st, ENOMEM);
	/* splice() from a TCP socket honours the socket's O_NONBLOCK, not SPLICE_F_NONBLOCK: a
	 * blocking socket would stall the worker inside tcp_splice_read(). */
	GUARD(set_nonblock(c->cfd));
	GUARD(set_nonblock(c->bfd));
	st->c2b.pipe[0] = st->c2b.pipe[1] = st->b2c.pipe[0] = st->b2c.pipe[1] = -1;
	GUARD(dir_init(&st->c2b));
	GUARD(dir_init(&st->b2c));
	c->dp_data = st;
	st = NULL;
cleanup:
	if (st) {
		dir_close(&st->c2b);
		dir_close(&st->b2c);
		free(st);
	}
	return ret;
}

/* A poll's result needs no bookkeeping (no .complete): pump() retries the splices, and errors
 * show there. */
/* The session's keys to the kernel (handoff.h), the pipes first: once the keys are in, nothing
 * may fail. */
static enum dp_attach attach(struct conn *c)
{
	struct ktls_keys keys;
	struct ktls_seq seq;

	switch (handoff_prepare(c, &keys, &seq)) {
	case HANDOFF_DONE:
		break;
	case HANDOFF_WAIT:
		return DP_WAIT;
	default:
		return DP_DECLINED;
	}
	if (make_pipes(c) < 0) {
		ktls_keys_wipe(&keys);
		c->tier_note = "cannot create splice pipes";
		return DP_DECLINED;
	}
	switch (handoff_install(c, &keys, &seq)) {
	case HANDOFF_DONE:
		return DP_ATTACHED;
	case HANDOFF_FATAL:
		release(c);
		return DP_CLOSED;
	default:
		release(c);
		return DP_DECLINED;
	}
}

/* After the handshake line, which still reads the SSL: no OpenSSL object or record buffer is
 * left. */
static void start(struct conn *c)
{
	SSL_free(c->tls.ssl);
	c->tls.ssl = NULL;
	buf_release(&c->cin);
	buf_release(&c->cout);
	buf_release(&c->bin);
	buf_release(&c->bout);
}

const struct dp_ops dp_splice = {
	.id = KTLSD_TIER_KTLS_SPLICE,
	.name = "ktls-splice",
	.attach = attach,
	.start = start,
	.pump = pump,
	.release = release,
};
