/* sinkd — the benchmark backend: one thread, epoll, loopback. The first byte a connection sends
 * picks what it gets:
 *   'U'  upload: everything after it is read and discarded;
 *   'D'  download: an endless stream of bytes is written to it;
 *   'E'  echo: every byte after it is written back (1 KiB request → 1 KiB response).
 * A connection that sends nothing (a handshake-only client) is closed when its peer closes.
 *
 * Usage: sinkd PORT */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#define CHUNK (64u << 10)

struct peer {
	int fd;
	char mode;		     /* 0 until the first byte */
	uint32_t pend_off, pend_len; /* echo bytes not yet written back */
	uint8_t *pend;
};

static uint8_t scratch[CHUNK];

static void drop(int ep, struct peer *p)
{
	epoll_ctl(ep, EPOLL_CTL_DEL, p->fd, NULL);
	close(p->fd);
	free(p->pend);
	free(p);
}

static void arm(int ep, struct peer *p, uint32_t events)
{
	struct epoll_event ev = { .events = events, .data.ptr = p };

	epoll_ctl(ep, EPOLL_CTL_MOD, p->fd, &ev);
}

/* Writes back pending echo bytes; false when the peer is gone. */
static int echo_flush(int ep, struct peer *p)
{
	while (p->pend_len) {
		ssize_t n = send(p->fd, p->pend + p->pend_off, p->pend_len, MSG_NOSIGNAL);

		if (n < 0 && errno == EAGAIN) {
			arm(ep, p, EPOLLOUT);
			return 1;
		}
		if (n <= 0)
			return 0;
		p->pend_off += (uint32_t)n;
		p->pend_len -= (uint32_t)n;
	}
	arm(ep, p, EPOLLIN);
	return 1;
}

/* Handles readiness on a connection; returns 0 when it should be dropped. */
static int serve(int ep, struct peer *p, uint32_t events)
{
	if (p->mode == 'D' && (events & EPOLLOUT)) {
		for (;;) {
			ssize_t n = send(p->fd, scratch, CHUNK, MSG_NOSIGNAL);

			if (n < 0 && errno == EAGAIN)
				break;
			if (n <= 0)
				return 0;
		}
	}
	if (p->mode == 'E' && p->pend_len && (events & EPOLLOUT))
		return echo_flush(ep, p);
	if (!(events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
		return 1;
	for (;;) {
		uint8_t *dst = scratch;
		ssize_t n;

		if (p->mode == 'E') {
			if (p->pend_len)
				return 1; /* the peer must read first */
			if (!p->pend && !(p->pend = malloc(CHUNK)))
				return 0;
			dst = p->pend;
		}
		n = recv(p->fd, dst, CHUNK, 0);
		if (n < 0 && errno == EAGAIN)
			return 1;
		if (n <= 0)
			return 0;
		if (!p->mode) {
			p->mode = (char)dst[0];
			if (p->mode == 'D') {
				arm(ep, p, EPOLLIN | EPOLLOUT);
				return 1;
			}
			if (p->mode != 'U' && p->mode != 'E')
				return 0;
			memmove(dst, dst + 1, (size_t)--n);
		}
		if (p->mode == 'E' && n > 0) {
			if (!p->pend && !(p->pend = malloc(CHUNK)))
				return 0;
			if (dst != p->pend)
				memcpy(p->pend, dst, (size_t)n);
			p->pend_off = 0;
			p->pend_len = (uint32_t)n;
			if (!echo_flush(ep, p))
				return 0;
		}
	}
}

int main(int argc, char **argv)
{
	struct sockaddr_in sa = { .sin_family = AF_INET,
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	struct epoll_event ev, evs[256];
	struct rlimit rl;
	int one = 1, lfd, ep;

	if (argc != 2) {
		fprintf(stderr, "usage: sinkd PORT\n");
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	memset(scratch, 'x', sizeof(scratch));
	sa.sin_port = htons((uint16_t)atoi(argv[1]));
	lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (lfd < 0 || bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(lfd, 4096) < 0) {
		perror("sinkd: listen");
		return 1;
	}
	ep = epoll_create1(EPOLL_CLOEXEC);
	ev.events = EPOLLIN;
	ev.data.ptr = NULL;
	epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
	for (;;) {
		int n = epoll_wait(ep, evs, 256, -1);

		for (int i = 0; i < n; i++) {
			struct peer *p = evs[i].data.ptr;

			if (!p) {
				int fd;

				while ((fd = accept4(lfd, NULL, NULL,
						     SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
					if (!(p = calloc(1, sizeof(*p)))) {
						close(fd);
						continue;
					}
					p->fd = fd;
					setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
					ev.events = EPOLLIN;
					ev.data.ptr = p;
					epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
				}
				continue;
			}
			if (!serve(ep, p, evs[i].events))
				drop(ep, p);
		}
	}
}
