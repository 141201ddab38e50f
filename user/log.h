/* log — one sink for the daemon's messages (stderr), with a level checked before arguments are
 * evaluated. Never pass key material to these macros.
 *
 * A worker never waits for the log's destination: once log_start() has run, a line is copied
 * into a bounded buffer (512 KiB) that a thread of its own writes to stderr; when the destination
 * does not keep up and the buffer is full, lines are dropped and counted, and the writer says how
 * many in a line of its own ("log: N lines dropped"). Before log_start() (and after log_stop())
 * the caller writes its line itself. */
#ifndef KTLSD_LOG_H
#define KTLSD_LOG_H

enum log_level { LOG_ERR, LOG_WARN, LOG_INFO, LOG_DEBUG };

extern enum log_level log_threshold;

void log_emit(enum log_level lvl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Parses "err", "warn", "info" or "debug"; returns 0 or -EINVAL. */
int log_set_level(const char *name);
/* Starts the writer thread (all signals blocked in it). 0 or -errno (lines are then written by
 * their callers, as before). Call after any fork. */
int log_start(void);
/* Writes out what is buffered, waiting up to wait_ms for the destination, then stops the writer. */
void log_stop(unsigned wait_ms);

#define log_at(lvl, ...)                                                                           \
	do {                                                                                       \
		if ((lvl) <= log_threshold)                                                        \
			log_emit((lvl), __VA_ARGS__);                                              \
	} while (0)
#define log_err(...) log_at(LOG_ERR, __VA_ARGS__)
#define log_warn(...) log_at(LOG_WARN, __VA_ARGS__)
#define log_info(...) log_at(LOG_INFO, __VA_ARGS__)
#define log_debug(...) log_at(LOG_DEBUG, __VA_ARGS__)

#endif
