/* worker — one thread, one io_uring, one listening socket per listener (SO_REUSEPORT), and the
 * connections it accepted. Workers share only the immutable state and atomic counters.
 *
 * Other threads talk to a worker through its mailbox (worker_call_*): a request goes to every
 * worker, each handles it on its own thread between two completions, and the sender waits for
 * all of them. That is how a reload swaps the state in (WORKER_MSG_ADOPT), how one listener is
 * drained, and how `ktlsctl connections` reads connections that only their worker may touch. */
#ifndef KTLSD_WORKER_H
#define KTLSD_WORKER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "conn_data.h"
#include "ring.h"
#include "state.h"

struct listen_slot {
	struct worker *w;
	struct listener_rt *l; /* in w->st; updated when a reload keeps the socket */
	struct listen_slot *next_dying;
	int fd;
	bool armed; /* a multishot accept is in flight */
	bool dying; /* closed; freed when the accept's last completion arrives */
} __attribute__((aligned(16)));

struct worker_msg;

struct worker {
	unsigned id;
	pthread_t thread;
	struct ring ring;
	int wake_fd; /* eventfd: other threads → worker */
	uint64_t wake_buf;
	atomic_bool drain_req; /* SIGTERM: stop accepting, finish connections, exit */
	pthread_mutex_t mbox_lock;
	struct worker_msg *mbox; /* newest first */
	bool mbox_closed;	 /* the worker has exited: calls complete at once */
	bool mbox_ok;		 /* mbox_lock initialised */
	struct state *st;
	struct listen_slot **slots; /* by listener index in st; NULL when drained */
	size_t n_slots;
	struct listen_slot *dying; /* closed slots waiting for their accept to end */
	/* What its connections see: the ring as their I/O seam, the clock, their list. */
	struct conn_env env;
	uint64_t drain_deadline_ms; /* 0 = not draining */
	struct __kernel_timespec tick_ts;
	bool stop;
	bool ring_ok;
} __attribute__((aligned(16)));

/* Opens the listening sockets of every listener for this worker. Errors name the listener. */
int worker_init(struct worker *w, unsigned id, struct state *st)
    __attribute__((warn_unused_result));
int worker_start(struct worker *w) __attribute__((warn_unused_result));
/* From any thread: ask the worker to stop accepting and drain. */
void worker_drain(struct worker *w);
void worker_join(struct worker *w);
void worker_destroy(struct worker *w);

/* A listening socket for l (SO_REUSEPORT, bound, listening). Returns the fd, or a negative errno
 * with "listener NAME: cannot listen on ADDR: REASON" in err (also logged when err is NULL). */
int worker_listen_socket(const struct cfg_listener *l, char *err, size_t errlen);

uint64_t worker_now_ms(void);

/* ---- mailbox ---- */

enum worker_msg_type {
	WORKER_MSG_ADOPT,	   /* serve new connections with a new state */
	WORKER_MSG_DRAIN_LISTENER, /* stop accepting on one listener */
	WORKER_MSG_CONNS,	   /* copy out connections matching a filter */
};

/* One listener of the new state, for one worker: keep the socket of the listener named keep (in
 * the worker's current state), or take fd. When neither is there the worker opens a socket. */
struct worker_listen {
	char *keep;
	int fd;
};

struct worker_conn_filter {
	char *listener; /* exact name */
	char *sni;	/* fnmatch(3) pattern, case-insensitive */
	char *tier;	/* tier name, "none" before forwarding */
};

struct worker_conn_info {
	unsigned worker;
	char listener[64];
	char peer[64];
	char sni[256];
	char backend[80];
	const char *phase, *tier;     /* static strings */
	const char *version, *cipher; /* static strings, or NULL */
	uint64_t c2b, b2c, age_ms, idle_ms;
};

struct worker_call;

struct worker_msg {
	struct worker_msg *next;
	struct worker_call *call;
	int ret; /* set by the worker: 0 or a negative errno */
	union {
		struct {
			struct state *st;	   /* reference, taken by the worker */
			struct worker_listen *lsn; /* one per listener of st */
			size_t n_lsn;
		} adopt;
		struct {
			char *name;
			unsigned conns; /* its connections on this worker */
		} drain;
		struct {
			struct worker_conn_info *out;
			size_t cap, n, matched;
		} conns;
	};
};

struct worker_call {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	unsigned pending;
	atomic_int refs;
	enum worker_msg_type type;
	struct worker_conn_filter filter; /* WORKER_MSG_CONNS */
	size_t n;
	struct worker_msg msgs[]; /* msgs[i] goes to workers[i] */
};

/* A call to n workers. The caller fills msgs[i] (ownership of payloads passes to the call), posts
 * it, waits, reads the results and puts it. Returns NULL when out of memory. */
struct worker_call *worker_call_new(enum worker_msg_type type, size_t n);
void worker_call_post(struct worker_call *call, struct worker *workers);
/* 0 once every worker answered, -ETIMEDOUT after timeout_ms (the call stays valid: late answers
 * land in it, and the last put frees it). */
int worker_call_wait(struct worker_call *call, unsigned timeout_ms);
/* Drops a reference; the last one frees the call and whatever payload no worker took. */
void worker_call_put(struct worker_call *call);

/* Worker side (worker_msg.c): runs the messages in the mailbox; closes it when the worker exits. */
void worker_mbox_run(struct worker *w);
void worker_mbox_close(struct worker *w);
/* Handlers on the worker's thread (worker.c). */
void worker_adopt(struct worker *w, struct worker_msg *m);
void worker_drain_listener(struct worker *w, struct worker_msg *m);

#endif
