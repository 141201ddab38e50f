/* log.c — see log.h. Until log_start(), and after log_stop(), lines are written at once by the
 * caller; in between they go through a buffer that one thread writes out. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

#define LOG_LINE 2048
#define LOG_RING (512u << 10) /* some 2,500 lines of connection logs */

enum log_level log_threshold = LOG_INFO;

static const char *const level_names[] = { "err", "warn", "info", "debug" };

/* Lines waiting for the writer: [head, head + len) of ring, wrapping. */
static struct {
	pthread_mutex_t lock;
	pthread_cond_t more, drained;
	char ring[LOG_RING];
	size_t head, len;
	uint64_t dropped; /* lines left out since the writer last said so */
	bool running, stop, writing;
	pthread_t thread;
} sink = {
	.lock = PTHREAD_MUTEX_INITIALIZER,
	.more = PTHREAD_COND_INITIALIZER,
	.drained = PTHREAD_COND_INITIALIZER,
};

int log_set_level(const char *name)
{
	for (size_t i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++) {
		if (strcmp(name, level_names[i]) == 0) {
			log_threshold = (enum log_level)i;
			return 0;
		}
	}
	return -EINVAL;
}

/* Writes all of p to stderr unless it fails for another reason than a signal. */
static void write_all(const char *p, size_t n)
{
	while (n) {
		ssize_t w = write(STDERR_FILENO, p, n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return;
		p += w;
		n -= (size_t)w;
	}
}

static size_t format_line(char *line, size_t cap, enum log_level lvl, const char *fmt, va_list ap)
{
	struct timespec ts;
	struct tm tm;
	int n, m;

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	n = snprintf(line, cap, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s ", tm.tm_year + 1900,
		     tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
		     ts.tv_nsec / 1000000, level_names[lvl]);
	m = vsnprintf(line + n, cap - (size_t)n - 1, fmt, ap);
	n += m < 0 ? 0 : m >= (int)(cap - (size_t)n - 1) ? (int)(cap - (size_t)n - 2) : m;
	line[n++] = '\n';
	return (size_t)n;
}

/* Appends a whole line to the ring, or counts it as dropped (lock held). */
static void ring_put(const char *line, size_t n)
{
	size_t tail = (sink.head + sink.len) % LOG_RING, first = LOG_RING - tail;

	if (LOG_RING - sink.len < n) {
		sink.dropped++;
		return;
	}
	if (first > n)
		first = n;
	memcpy(sink.ring + tail, line, first);
	memcpy(sink.ring, line + first, n - first);
	if (sink.len == 0)
		pthread_cond_signal(&sink.more);
	sink.len += n;
}

void log_emit(enum log_level lvl, const char *fmt, ...)
{
	char line[LOG_LINE];
	va_list ap;
	size_t n;

	va_start(ap, fmt);
	n = format_line(line, sizeof(line), lvl, fmt, ap);
	va_end(ap);
	pthread_mutex_lock(&sink.lock);
	if (sink.running) {
		ring_put(line, n);
		pthread_mutex_unlock(&sink.lock);
		return;
	}
	pthread_mutex_unlock(&sink.lock);
	write_all(line, n); /* one write per line: lines from different threads stay whole */
}

/* The writer: takes what the ring holds, contiguous piece by piece, and writes it with the lock
 * released, so a sink that blocks (a full pipe, a stalled journald) holds up only this thread. */
static void *writer(void *arg)
{
	char note[160];

	pthread_mutex_lock(&sink.lock);
	for (;;) {
		while (!sink.len && !sink.dropped && !sink.stop)
			pthread_cond_wait(&sink.more, &sink.lock);
		if (!sink.len && !sink.dropped)
			break; /* stopping, and everything is out */
		if (sink.dropped) {
			uint64_t d = sink.dropped;
			int n;

			sink.dropped = 0;
			n = snprintf(note, sizeof(note),
				     "log: %llu lines dropped: the log's destination did not keep "
				     "up\n",
				     (unsigned long long)d);
			pthread_mutex_unlock(&sink.lock);
			write_all(note, (size_t)n);
			pthread_mutex_lock(&sink.lock);
			continue;
		}
		size_t n = sink.len < LOG_RING - sink.head ? sink.len : LOG_RING - sink.head;
		const char *p = sink.ring + sink.head;

		sink.writing = true;
		pthread_mutex_unlock(&sink.lock);
		write_all(p, n); /* the writer alone moves head: [p, p + n) stays put */
		pthread_mutex_lock(&sink.lock);
		sink.writing = false;
		sink.head = (sink.head + n) % LOG_RING;
		sink.len -= n;
		if (!sink.len)
			pthread_cond_broadcast(&sink.drained);
	}
	pthread_cond_broadcast(&sink.drained);
	pthread_mutex_unlock(&sink.lock);
	return arg;
}

int log_start(void)
{
	sigset_t all, old;
	int r;

	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old); /* the writer takes no signal */
	r = pthread_create(&sink.thread, NULL, writer, NULL);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (r)
		return -r;
	pthread_mutex_lock(&sink.lock);
	sink.running = true;
	pthread_mutex_unlock(&sink.lock);
	return 0;
}

void log_stop(unsigned wait_ms)
{
	struct timespec dl;
	bool done;

	pthread_mutex_lock(&sink.lock);
	if (!sink.running) {
		pthread_mutex_unlock(&sink.lock);
		return;
	}
	sink.stop = true;
	pthread_cond_signal(&sink.more);
	clock_gettime(CLOCK_REALTIME, &dl);
	dl.tv_sec += wait_ms / 1000;
	dl.tv_nsec += (long)(wait_ms % 1000) * 1000000;
	if (dl.tv_nsec >= 1000000000) {
		dl.tv_sec++;
		dl.tv_nsec -= 1000000000;
	}
	while ((sink.len || sink.dropped || sink.writing) &&
	       pthread_cond_timedwait(&sink.drained, &sink.lock, &dl) == 0)
		;
	done = !sink.len && !sink.dropped && !sink.writing;
	/* Lines from here on are written by their callers (and may block: the process is ending).
	 */
	sink.running = false;
	pthread_mutex_unlock(&sink.lock);
	if (done)
		pthread_join(sink.thread, NULL);
	else
		pthread_detach(sink.thread); /* its sink is stuck: exit without it */
}
