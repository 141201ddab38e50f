/* secretfile — the permission rule for files that hold secrets (private keys, ticket keys): only
 * their owner may read or write them. Small on purpose, so every loader of a secret shares it. */
#ifndef KTLSD_SECRETFILE_H
#define KTLSD_SECRETFILE_H

#include <stddef.h>

/* 0 when fd (opened from path) is a regular file that neither its group nor other users can
 * read or write; else -EPERM (or -errno of fstat) with why naming path, its mode and the fix. */
int secretfile_check(int fd, const char *path, char *why, size_t whylen)
	__attribute__((warn_unused_result));

#endif
