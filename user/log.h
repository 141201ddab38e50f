/* log — one sink for the daemon's messages (stderr), with a level checked before arguments are
 * evaluated. Never pass key material to these macros. */
#ifndef KTLSD_LOG_H
#define KTLSD_LOG_H

enum log_level { LOG_ERR, LOG_WARN, LOG_INFO, LOG_DEBUG };

extern enum log_level log_threshold;

void log_emit(enum log_level lvl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Parses "err", "warn", "info" or "debug"; returns 0 or -EINVAL. */
int log_set_level(const char *name);
/* Routes libbpf's and OpenSSL's error queue messages through the same sink. */
void log_openssl_errors(enum log_level lvl, const char *what);

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
