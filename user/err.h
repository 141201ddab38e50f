/* err.h — guard macros in the s2n style. Functions return 0 or a negative errno; these keep the
 * checks one line each and route every failure to the function's single cleanup label. */
#ifndef KTLSD_ERR_H
#define KTLSD_ERR_H

#include <errno.h>

#define __must_check __attribute__((warn_unused_result))

/* Jump to cleanup with ret = x when x is negative. */
#define GUARD(x)                                                                                   \
	do {                                                                                       \
		ret = (x);                                                                         \
		if (ret < 0)                                                                       \
			goto cleanup;                                                              \
	} while (0)

/* Jump to cleanup with ret = -err unless cond holds. */
#define ENSURE(cond, err)                                                                          \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			ret = -(err);                                                              \
			goto cleanup;                                                              \
		}                                                                                  \
	} while (0)

/* OpenSSL calls that return 1 on success. */
#define GUARD_OSSL(x) ENSURE((x) == 1, EPROTO)

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define MIN(a, b) ((a) < (b) ? (a) : (b))
#define MAX(a, b) ((a) > (b) ? (a) : (b))

#endif
