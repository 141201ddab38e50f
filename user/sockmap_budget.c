#include <stdlib.h>

#include "sockmap_budget.h"

static int larger_first(const void *a, const void *b)
{
	uint64_t x = ((const struct sockmap_backlog *)a)->bytes;
	uint64_t y = ((const struct sockmap_backlog *)b)->bytes;

	return x < y ? 1 : x > y ? -1 : 0;
}

size_t sockmap_budget_pick(struct sockmap_backlog *v, size_t n, uint64_t total, uint64_t budget,
			   uint64_t elsewhere)
{
	size_t k = 0;

	if (total <= budget || !n)
		return 0;
	qsort(v, n, sizeof(*v), larger_first);
	while (k < n && total > budget && v[k].bytes && v[k].bytes >= elsewhere) {
		total -= v[k].bytes < total ? v[k].bytes : total;
		k++;
	}
	return k;
}
