#include "ratelog.h"

bool ratelog_allow(struct ratelog *r, uint64_t now_ms, uint64_t *suppressed)
{
	uint64_t next = atomic_load_explicit(&r->next_ms, memory_order_relaxed);

	/* One thread wins the interval; the others count themselves as left out. */
	if (now_ms < next || !atomic_compare_exchange_strong_explicit(
				 &r->next_ms, &next, now_ms + RATELOG_INTERVAL_MS,
				 memory_order_relaxed, memory_order_relaxed)) {
		atomic_fetch_add_explicit(&r->suppressed, 1, memory_order_relaxed);
		return false;
	}
	*suppressed = atomic_exchange_explicit(&r->suppressed, 0, memory_order_relaxed);
	return true;
}
