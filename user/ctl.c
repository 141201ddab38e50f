#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "ctl.h"
#include "log.h"
#include "metrics.h"
#include "ratelog.h"
#include "worker.h"

#define HTTP_HEAD_MAX 8192
#define IDLE_MS 60000  /* a control client that sends nothing for this long is closed */
#define LINGER_MS 2000 /* from our reply and shutdown to the client's EOF, at most */

struct ctl_client {
	struct ctl_client *prev, *next;
	int fd;
	bool http;
	bool eof;	  /* the peer shut its side */
	bool close_after; /* close once out is sent */
	bool discarding;  /* skipping the rest of an oversized line */
	bool lingering;	  /* replied and shut our side: reading what is left, then close */
	char *in;
	size_t in_len, in_cap;
	char *out;
	size_t out_len, out_off;
	uint64_t last_ms;
	uint64_t deadline_ms; /* closed then, whatever it sends (metrics, lingering); 0: IDLE_MS */
};

/* epoll tags for the three non-client descriptors. */
static char tag_ctl, tag_metrics, tag_wake;

static uint64_t now_ms(void)
{
	return worker_now_ms();
}

/* ---- sockets ---- */

/* mkdir -p for the socket's directory: components it creates are 0700. */
static int make_parent(const char *path)
{
	char dir[sizeof(((struct sockaddr_un *)0)->sun_path)];
	char *p;

	snprintf(dir, sizeof(dir), "%s", path);
	p = strrchr(dir, '/');
	if (!p || p == dir)
		return 0;
	*p = '\0';
	for (p = dir + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(dir, 0700) < 0 && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	if (mkdir(dir, 0700) < 0 && errno != EEXIST)
		return -errno;
	return 0;
}

/* A socket file left by a ktlsd that is gone is replaced; one that answers belongs to a running
 * daemon, and anything else at the path is not ours to remove. */
static int clear_stale(const struct sockaddr_un *sa)
{
	struct stat st;
	int fd, ret = 0;

	if (lstat(sa->sun_path, &st) < 0)
		return errno == ENOENT ? 0 : -errno;
	if (!S_ISSOCK(st.st_mode)) {
		log_err("control socket %s: the path exists and is not a socket", sa->sun_path);
		return -EEXIST;
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (const struct sockaddr *)sa, sizeof(*sa)) == 0) {
		log_err("control socket %s is in use by a running process (another ktlsd?)",
			sa->sun_path);
		ret = -EADDRINUSE;
	} else if (unlink(sa->sun_path) < 0 && errno != ENOENT) {
		ret = -errno;
	}
	close(fd);
	return ret;
}

static int open_ctl_socket(struct ctl *c, const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	mode_t old_mask;
	int fd = -1, ret = 0;

	if (strlen(path) >= sizeof(sa.sun_path)) {
		log_err("control socket %s: path longer than %zu bytes", path,
			sizeof(sa.sun_path) - 1);
		return -ENAMETOOLONG;
	}
	strcpy(sa.sun_path, path);
	ret = make_parent(path);
	if (ret < 0) {
		log_err("control socket %s: cannot create its directory: %s", path, strerror(-ret));
		return ret;
	}
	GUARD(clear_stale(&sa));
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	ENSURE(fd >= 0, errno);
	/* Only threads of this process exist yet: the umask change is not seen elsewhere, and
	 * the socket is never reachable with a wider mode than 0600. */
	old_mask = umask(0177);
	ret = bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ? -errno : 0;
	umask(old_mask);
	GUARD(ret);
	ENSURE(chmod(path, 0600) == 0 && listen(fd, 64) == 0, errno);
	c->sock_path = strdup(path);
	c->ctl_fd = fd;
	fd = -1;
cleanup:
	if (ret < 0 && ret != -EADDRINUSE && ret != -EEXIST)
		log_err("control socket %s: %s", path, strerror(-ret));
	if (fd >= 0)
		close(fd);
	return ret;
}

static int open_metrics_socket(struct ctl *c, const struct cfg_addr *a)
{
	int fd, one = 1, ret = 0;

	fd = socket(a->ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	ENSURE(fd >= 0, errno);
	ENSURE(setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) == 0, errno);
	ENSURE(bind(fd, (const struct sockaddr *)&a->ss, a->len) == 0, errno);
	ENSURE(listen(fd, 64) == 0, errno);
	c->metrics_fd = fd;
	fd = -1;
cleanup:
	if (ret < 0)
		log_err("metrics.bind: cannot listen on %s: %s", a->text, strerror(-ret));
	if (fd >= 0)
		close(fd);
	return ret;
}

static int ep_add(struct ctl *c, int fd, void *tag, uint32_t events)
{
	struct epoll_event ev = { .events = events, .data.ptr = tag };

	return epoll_ctl(c->ep, EPOLL_CTL_ADD, fd, &ev) < 0 ? -errno : 0;
}

int ctl_open(struct ctl *c, const struct config *cfg, struct reload *rl)
{
	int ret = 0;

	memset(c, 0, sizeof(*c));
	c->ctl_fd = c->metrics_fd = c->wake_fd = c->ep = -1;
	c->rl = rl;
	c->uid = geteuid();
	GUARD(open_ctl_socket(c, cfg->control.socket));
	if (cfg->metrics.enabled)
		GUARD(open_metrics_socket(c, &cfg->metrics.bind));
	c->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	c->ep = epoll_create1(EPOLL_CLOEXEC);
	ENSURE(c->wake_fd >= 0 && c->ep >= 0, errno);
	GUARD(ep_add(c, c->ctl_fd, &tag_ctl, EPOLLIN));
	GUARD(ep_add(c, c->wake_fd, &tag_wake, EPOLLIN));
	if (c->metrics_fd >= 0)
		GUARD(ep_add(c, c->metrics_fd, &tag_metrics, EPOLLIN));
cleanup:
	return ret;
}

/* ---- clients ---- */

static void client_close(struct ctl *c, struct ctl_client *cl)
{
	if (cl->prev)
		cl->prev->next = cl->next;
	else
		c->clients = cl->next;
	if (cl->next)
		cl->next->prev = cl->prev;
	c->n_clients[cl->http]--;
	close(cl->fd); /* also leaves the epoll set */
	free(cl->in);
	free(cl->out);
	free(cl);
}

static int client_out(struct ctl_client *cl, const char *data, size_t len)
{
	char *p = realloc(cl->out, cl->out_len + len);

	if (!p)
		return -ENOMEM;
	memcpy(p + cl->out_len, data, len);
	cl->out = p;
	cl->out_len += len;
	return 0;
}

static void client_reply(struct ctl_client *cl, json_t *reply)
{
	char *text = json_dumps(reply, JSON_COMPACT);

	if (!text || client_out(cl, text, strlen(text)) < 0 || client_out(cl, "\n", 1) < 0)
		cl->close_after = true;
	free(text);
	json_decref(reply);
}

/* Handles complete request lines while nothing waits to be sent: one reply at a time, so a
 * client that does not read its replies cannot make ktlsd buffer without bound. */
static void client_lines(struct ctl *c, struct ctl_client *cl)
{
	char *nl;
	size_t len;

	while (!cl->out_len && !cl->close_after) {
		nl = memchr(cl->in, '\n', cl->in_len);
		if (cl->discarding) {
			cl->discarding = !nl;
			len = nl ? (size_t)(nl + 1 - cl->in) : cl->in_len;
			cl->in_len -= len;
			memmove(cl->in, cl->in + len, cl->in_len);
			if (!nl && cl->eof)
				cl->close_after = true;
			if (!nl)
				return;
			continue;
		}
		if (!nl) {
			if (cl->in_len > CTL_LINE_MAX) {
				/* Answer, then skip to the next newline: the client may go on. */
				client_reply(
				    cl, ctl_error("request longer than %d bytes", CTL_LINE_MAX));
				cl->discarding = true;
				cl->in_len = 0;
			} else if (cl->eof) {
				if (cl->in_len)
					client_reply(cl, ctl_request(c->rl, cl->in, cl->in_len));
				cl->in_len = 0;
				cl->close_after = true;
			}
			return;
		}
		len = (size_t)(nl - cl->in);
		if (len && cl->in[len - 1] == '\r')
			len--;
		if (len)
			client_reply(cl, ctl_request(c->rl, cl->in, len));
		cl->in_len -= (size_t)(nl + 1 - cl->in);
		memmove(cl->in, nl + 1, cl->in_len);
	}
}

static void client_http(struct ctl *c, struct ctl_client *cl)
{
	char *resp = NULL;
	size_t len = 0;
	bool whole =
	    memmem(cl->in, cl->in_len, "\r\n\r\n", 4) || memmem(cl->in, cl->in_len, "\n\n", 2);

	if (!whole && !cl->eof && cl->in_len < cl->in_cap)
		return;
	if (metrics_http(c->rl, cl->in, cl->in_len, whole, &resp, &len) == 0)
		client_out(cl, resp, len);
	free(resp);
	cl->close_after = true;
	cl->deadline_ms = now_ms() + METRICS_RESPONSE_MS;
}

static void client_update(struct ctl *c, struct ctl_client *cl)
{
	struct epoll_event ev = { .data.ptr = cl };

	if (!cl->out_len && cl->close_after) {
		if (cl->eof || cl->lingering) {
			client_close(c, cl);
			return;
		}
		/* Closing with unread input would reset the connection and could destroy the
		 * reply before the client reads it: shut our side and read until its EOF, for
		 * LINGER_MS at most, however it trickles. */
		shutdown(cl->fd, SHUT_WR);
		cl->lingering = true;
		cl->deadline_ms = now_ms() + LINGER_MS;
	}
	ev.events = cl->out_len ? EPOLLOUT : EPOLLIN;
	if (epoll_ctl(c->ep, EPOLL_CTL_MOD, cl->fd, &ev) < 0)
		client_close(c, cl);
}

static void client_readable(struct ctl *c, struct ctl_client *cl)
{
	ssize_t n;

	if (cl->lingering) {
		char sink[4096];

		while ((n = read(cl->fd, sink, sizeof(sink))) > 0)
			;
		if (n == 0 || errno != EAGAIN)
			client_close(c, cl);
		return;
	}

	while (cl->in_len < cl->in_cap) {
		n = read(cl->fd, cl->in + cl->in_len, cl->in_cap - cl->in_len);
		if (n > 0) {
			cl->in_len += (size_t)n;
			continue;
		}
		if (n == 0)
			cl->eof = true;
		else if (errno == EINTR)
			continue;
		else if (errno != EAGAIN)
			cl->close_after = cl->eof = true;
		break;
	}
	if (cl->http)
		client_http(c, cl);
	else
		client_lines(c, cl);
	client_update(c, cl);
}

static void client_writable(struct ctl *c, struct ctl_client *cl)
{
	ssize_t n;

	while (cl->out_off < cl->out_len) {
		n = send(cl->fd, cl->out + cl->out_off, cl->out_len - cl->out_off, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return;
		if (n < 0) {
			client_close(c, cl);
			return;
		}
		cl->out_off += (size_t)n;
	}
	cl->out_len = cl->out_off = 0;
	if (!cl->http)
		client_lines(c, cl); /* requests that arrived behind the last one */
	client_update(c, cl);
}

/* SO_PEERCRED: the control socket's mode already keeps others out; this holds even when it
 * was loosened by hand. Root may always connect. */
static bool peer_allowed(struct ctl *c, struct ctl_client *cl)
{
	struct ucred cr;
	socklen_t len = sizeof(cr);

	if (getsockopt(cl->fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) < 0) {
		client_reply(cl, ctl_error("permission denied: no peer credentials"));
		return false;
	}
	if (cr.uid == c->uid || cr.uid == 0)
		return true;
	log_warn("control socket: refused pid %d uid %u (ktlsd runs as uid %u)", (int)cr.pid,
		 (unsigned)cr.uid, (unsigned)c->uid);
	client_reply(cl, ctl_error("permission denied: uid %u may not control ktlsd (uid %u)",
				   (unsigned)cr.uid, (unsigned)c->uid));
	return false;
}

static void on_accept(struct ctl *c, int lfd, bool http)
{
	static struct ratelog refusals[2];
	const unsigned max = http ? METRICS_MAX_CLIENTS : CTL_MAX_CLIENTS;
	struct ctl_client *cl;
	uint64_t left_out;
	int fd;

	while ((fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
		if (c->n_clients[http] >= max) {
			close(fd);
			if (ratelog_allow(&refusals[http], now_ms(), &left_out))
				log_warn("%s: %u clients already; refusing another (%llu more "
					 "refused since the last line)",
					 http ? "metrics" : "control", c->n_clients[http],
					 (unsigned long long)left_out);
			continue;
		}
		cl = calloc(1, sizeof(*cl));
		if (cl) {
			cl->in_cap = http ? HTTP_HEAD_MAX : CTL_LINE_MAX + 1;
			cl->in = malloc(cl->in_cap);
		}
		if (!cl || !cl->in) {
			if (cl)
				free(cl);
			close(fd);
			continue;
		}
		cl->fd = fd;
		cl->http = http;
		cl->last_ms = now_ms();
		if (http)
			cl->deadline_ms = cl->last_ms + METRICS_REQUEST_MS;
		cl->next = c->clients;
		if (c->clients)
			c->clients->prev = cl;
		c->clients = cl;
		c->n_clients[http]++;
		if (ep_add(c, fd, cl, EPOLLIN) < 0) {
			client_close(c, cl);
			continue;
		}
		if (!http && !peer_allowed(c, cl)) {
			cl->close_after = true;
			client_update(c, cl);
		}
	}
}

/* Control clients go after IDLE_MS without a byte; metrics clients and lingering ones at their
 * deadline, however they trickle. */
static void expire_idle(struct ctl *c)
{
	static struct ratelog slow;
	struct ctl_client *cl, *next;
	uint64_t now = now_ms(), left_out;

	for (cl = c->clients; cl; cl = next) {
		next = cl->next;
		if (cl->deadline_ms ? now < cl->deadline_ms : now - cl->last_ms <= IDLE_MS)
			continue;
		if (cl->http && !cl->lingering && ratelog_allow(&slow, now, &left_out))
			log_info("metrics: closing a client that did not %s within %u ms "
				 "(%llu more since the last line)",
				 cl->close_after ? "take its response" : "send its whole request",
				 cl->close_after ? METRICS_RESPONSE_MS : METRICS_REQUEST_MS,
				 (unsigned long long)left_out);
		client_close(c, cl);
	}
}

static void *ctl_main(void *arg)
{
	struct ctl *c = arg;
	struct epoll_event evs[32];
	uint64_t last_scan = now_ms();

	for (;;) {
		int n = epoll_wait(c->ep, evs, 32, 1000);

		if (n < 0 && errno != EINTR) {
			log_err("control: epoll_wait: %s", strerror(errno));
			break;
		}
		for (int i = 0; i < n; i++) {
			void *tag = evs[i].data.ptr;
			struct ctl_client *cl = tag;

			if (tag == &tag_wake)
				return NULL;
			if (tag == &tag_ctl || tag == &tag_metrics) {
				on_accept(c, tag == &tag_ctl ? c->ctl_fd : c->metrics_fd,
					  tag == &tag_metrics);
				continue;
			}
			cl->last_ms = now_ms();
			if (evs[i].events & EPOLLOUT)
				client_writable(c, cl);
			else
				client_readable(c, cl);
		}
		if (now_ms() - last_scan >= 1000) {
			expire_idle(c);
			last_scan = now_ms();
		}
	}
	return NULL;
}

int ctl_start(struct ctl *c)
{
	int r = pthread_create(&c->thread, NULL, ctl_main, c);

	if (r) {
		log_err("control: pthread_create: %s", strerror(r));
		return -r;
	}
	c->running = true;
	return 0;
}

void ctl_close(struct ctl *c)
{
	uint64_t one = 1;

	if (c->running) {
		if (write(c->wake_fd, &one, sizeof(one)) < 0)
			log_err("control: wake: %s", strerror(errno));
		pthread_join(c->thread, NULL);
		c->running = false;
	}
	while (c->clients)
		client_close(c, c->clients);
	if (c->ctl_fd >= 0)
		close(c->ctl_fd);
	if (c->sock_path)
		unlink(c->sock_path);
	if (c->metrics_fd >= 0)
		close(c->metrics_fd);
	if (c->wake_fd >= 0)
		close(c->wake_fd);
	if (c->ep >= 0)
		close(c->ep);
	free(c->sock_path);
	c->ctl_fd = c->metrics_fd = c->wake_fd = c->ep = -1;
	c->sock_path = NULL;
}
