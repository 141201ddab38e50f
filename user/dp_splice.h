/* dp_splice — the ktls-splice tier: the client socket has kernel TLS (handoff.h installed the
 * keys), and bytes move client ↔ backend with splice() through a pipe per direction. */
#ifndef KTLSD_DP_SPLICE_H
#define KTLSD_DP_SPLICE_H

#include "dp.h"

extern const struct dp_ops dp_splice;

#endif
