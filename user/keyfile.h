/* keyfile — the permission check for files that hold private keys (certificate keys, and any
 * other secret ktlsd reads from disk): a key must be readable and writable by its owner only, and
 * when ktlsd drops to a configured user, owned by that user (it re-reads keys at reload as that
 * user, and anyone else who owns the file could replace it). key_file_permissions decides whether
 * a problem refuses the config or is logged as a warning. */
#ifndef KTLSD_KEYFILE_H
#define KTLSD_KEYFILE_H

#include <stdbool.h>
#include <sys/types.h>

#include "config.h"

/* Checks the key file at path, which the config names at json_path (e.g.
 * "certificates.cats.key"). A problem is added to errs as "CONFIG: JSON.PATH: reason" in refuse
 * mode, or logged as a warning in warn mode. owner is the uid the file must belong to, or
 * (uid_t)-1 for any owner. A file that cannot be stat()ed is left to the code that reads it,
 * which reports it. Returns false when a problem was added to errs. */
bool keyfile_check(const struct config *cfg, const char *path, const char *json_path, uid_t owner,
		   struct cfg_errors *errs);

#endif
