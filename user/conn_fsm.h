/* conn_fsm — a connection's state machine: what each completion and each tick does in each state
 * (docs/architecture.md, "States"). The worker calls these four; nothing below the worker does. */
#ifndef KTLSD_CONN_FSM_H
#define KTLSD_CONN_FSM_H

#include <stdint.h>
#include <sys/socket.h>

struct admit_hold;
struct conn;
struct conn_env;
struct listener_rt;
struct state;

/* Takes a just-accepted socket from peer, for listener l of state st, and what admit_connection
 * granted it (*hold is emptied: the connection releases it). Returns 0, or a negative errno after
 * closing fd (the caller then still owns *hold). */
int conn_accept(struct conn_env *env, struct state *st, struct listener_rt *l, int fd,
		const struct sockaddr_storage *peer, struct admit_hold *hold)
    __attribute__((warn_unused_result));
/* Dispatches a completion of an operation tagged for c. */
void conn_complete(struct conn *c, unsigned op, int res);
/* Called by the worker's timer: closes connections past their deadline, runs the tier's tick. */
void conn_check_timeout(struct conn *c, uint64_t now_ms);

#endif
