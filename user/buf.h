/* buf — a bounded byte buffer: data in [head, tail) of a block of cap bytes allocated on first use
 * and released with buf_release() when a connection goes idle.
 *
 * pins counts the kernel operations reading or writing the block right now (a recv into the tail,
 * a send from the head). A pinned block is never moved or rewound: appending at the tail and
 * consuming at the head stay safe, which is all the callers do while an operation is in flight. */
#ifndef KTLSD_BUF_H
#define KTLSD_BUF_H

#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct buf {
	uint8_t *data;
	uint32_t head, tail, cap;
	uint8_t pins;
};

static inline uint32_t buf_len(const struct buf *b)
{
	return b->tail - b->head;
}

static inline uint32_t buf_space(const struct buf *b)
{
	return b->data ? b->cap - b->tail : b->cap;
}

/* Makes sure the block exists and, when empty, rewinds it. Returns 0 or -ENOMEM. */
static inline int buf_ready(struct buf *b)
{
	if (!b->data && !(b->data = malloc(b->cap)))
		return -12; /* -ENOMEM */
	if (b->head == b->tail && !b->pins)
		b->head = b->tail = 0;
	return 0;
}

/* Moves the data to the start so the free space is contiguous. */
static inline void buf_compact(struct buf *b)
{
	if (b->pins)
		return;
	if (b->head && b->head != b->tail)
		memmove(b->data, b->data + b->head, buf_len(b));
	b->tail -= b->head;
	b->head = 0;
}

static inline void buf_consume(struct buf *b, uint32_t n)
{
	b->head += n;
	if (b->head == b->tail && !b->pins)
		b->head = b->tail = 0;
}

/* Frees the block of a buffer no kernel operation holds (a pinned block is still being read or
 * written by the kernel: freeing it is a use-after-free, so it is a bug in the caller). */
static inline void buf_release(struct buf *b)
{
	assert(!b->pins);
	free(b->data);
	b->data = NULL;
	b->head = b->tail = 0;
}

#endif
