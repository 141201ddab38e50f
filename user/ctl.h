/* ctl — the control socket (line-delimited JSON, docs/control.md) and the Prometheus endpoint
 * (docs/metrics.md), served by one thread of their own with epoll, so that no control client,
 * however slow, can stall a worker. Commands that change the running config go through
 * reload.h and wait for the workers there, on this thread. */
#ifndef KTLSD_CTL_H
#define KTLSD_CTL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>
#include <time.h>

#include <jansson.h>

#include "config.h"
#include "err.h"

/* Longest request line accepted, newline excluded (a cert-set carries two PEM texts). */
#define CTL_LINE_MAX 65536
/* Connections held at once, each kind with its own cap, so that metrics clients (anyone who can
 * reach metrics.bind) can never take the control socket's; further ones are closed at accept. */
#define CTL_MAX_CLIENTS 256
#define METRICS_MAX_CLIENTS 64
/* A metrics client has this long from accept to send its whole request, then this long to take
 * the whole response, whatever it sends meanwhile (docs/metrics.md). */
#define METRICS_REQUEST_MS 5000
#define METRICS_RESPONSE_MS 5000

struct reload;
struct ctl_client;

/* A ctl that ctl_close may be called on before ctl_open. */
#define CTL_INIT                                                                                   \
	{                                                                                          \
		.ctl_fd = -1, .metrics_fd = -1, .wake_fd = -1, .ep = -1                            \
	}

struct ctl {
	struct reload *rl;
	int ctl_fd, metrics_fd, wake_fd, ep;
	char *sock_path; /* removed at ctl_close */
	uid_t uid;	 /* who may use the control socket (besides root) */
	pthread_t thread;
	bool running;
	struct ctl_client *clients;
	unsigned n_clients[2]; /* control, metrics (ctl_client.http) */
};

/* Creates the control socket (mode 0600; its directory 0700 when missing; a stale socket is
 * replaced, a live one is an error) and the metrics listener when configured. Errors are logged
 * with the path or address. Call before daemon(): the thread starts in ctl_start. */
int ctl_open(struct ctl *c, const struct config *cfg, struct reload *rl) __must_check;
int ctl_start(struct ctl *c) __must_check;
/* Stops the thread (the command in progress completes first), closes every socket and removes
 * the control socket. Safe on a ctl that is only CTL_INIT or only opened. */
void ctl_close(struct ctl *c);

/* ctl_cmd.c: one request line (without its newline) → the reply object. Never NULL. */
json_t *ctl_request(struct reload *rl, const char *line, size_t len);
/* {"error": "..."} */
json_t *ctl_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ctl_show.c: the read-only views, each a complete reply. */
json_t *ctl_show_stats(struct reload *rl);
json_t *ctl_show_listeners(struct reload *rl);
json_t *ctl_show_certs(struct reload *rl, const char *name);
/* "2024-05-01T12:00:00Z" */
json_t *ctl_json_time(time_t t);

#endif
