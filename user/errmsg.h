/* errmsg — operator-readable error messages into caller buffers, shared by the modules that
 * report problems as text (certificate and CA loading) rather than by logging them. */
#ifndef KTLSD_ERRMSG_H
#define KTLSD_ERRMSG_H

#include <stddef.h>

/* snprintf into err when err and errlen are usable; accepts NULL. */
void errmsg_set(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* OpenSSL's reason for the first (innermost, most specific) queued error, into buf; empties the
 * queue. Returns buf. */
const char *errmsg_ossl_reason(char *buf, size_t len);

#endif
