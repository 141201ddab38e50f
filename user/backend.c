#include "backend.h"

size_t backend_first(struct backend_rt *b)
{
	if (b->cfg->balance == CFG_BALANCE_FIRST)
		return 0;
	return atomic_fetch_add_explicit(&b->next, 1, memory_order_relaxed) % b->cfg->n_servers;
}

const struct cfg_addr *backend_server(const struct backend_rt *b, size_t first, unsigned attempt)
{
	if (attempt >= b->cfg->n_servers)
		return NULL;
	return &b->cfg->servers[(first + attempt) % b->cfg->n_servers];
}
