/* tier.c — see tier.h. */
#include "conn.h"
#include "dp_sockmap.h"
#include "dp_splice.h"
#include "dp_userspace.h"
#include "err.h"
#include "tier.h"

/* Fastest first: the kernel moves every byte (sockmap), the kernel encrypts and decrypts while
 * splice moves the bytes (ktls-splice), ktlsd does it all (userspace, which takes anything). */
static const struct dp_ops *const candidates[] = { &dp_sockmap, &dp_splice, &dp_userspace };

void tier_choose(struct conn *c)
{
	for (size_t i = 0; i < ARRAY_SIZE(candidates); i++) {
		const struct dp_ops *dp = candidates[i];

		switch (dp->attach(c)) {
		case DP_DECLINED:
			continue;
		case DP_WAIT:
		case DP_CLOSED:
			return;
		case DP_ATTACHED:
			conn_set_tier(c, dp);
			conn_enter(c, CONN_FORWARDING);
			conn_report(c, CONN_END_OK, NULL); /* names the tier */
			if (dp->start)
				dp->start(c);
			dp->pump(c);
			return;
		}
	}
}
