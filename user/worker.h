/* worker — one thread, one io_uring, one listening socket per listener (SO_REUSEPORT), and the
 * connections it accepted. Workers share only the immutable state and atomic counters. */
#ifndef KTLSD_WORKER_H
#define KTLSD_WORKER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "conn.h"
#include "ring.h"
#include "state.h"

struct listen_slot {
	struct worker *w;
	struct listener_rt *l;
	int fd;
	bool armed; /* a multishot accept is in flight */
} __attribute__((aligned(16)));

struct worker {
	unsigned id;
	pthread_t thread;
	struct ring ring;
	int wake_fd; /* eventfd: main thread → worker */
	uint64_t wake_buf;
	struct state *st;
	struct listen_slot *slots;
	size_t n_slots;
	struct conn *conns; /* doubly linked list head */
	unsigned n_conns;
	uint64_t now_ms;
	uint64_t drain_deadline_ms; /* 0 = not draining */
	uint64_t last_limit_log_ms;
	struct __kernel_timespec tick_ts;
	bool stop;
	bool ring_ok;
} __attribute__((aligned(16)));

/* Opens the listening sockets of every listener for this worker. Errors name the listener. */
int worker_init(struct worker *w, unsigned id, struct state *st) __attribute__((warn_unused_result));
int worker_start(struct worker *w) __attribute__((warn_unused_result));
/* From any thread: ask the worker to stop accepting and drain. */
void worker_drain(struct worker *w);
void worker_join(struct worker *w);
void worker_destroy(struct worker *w);

uint64_t worker_now_ms(void);
void worker_conn_added(struct worker *w, struct conn *c);
void worker_conn_removed(struct worker *w, struct conn *c);

#endif
