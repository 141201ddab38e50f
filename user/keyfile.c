#include <stdio.h>
#include <sys/stat.h>

#include "keyfile.h"
#include "log.h"

bool keyfile_check(const struct config *cfg, const char *path, const char *json_path, uid_t owner,
		   struct cfg_errors *errs)
{
	char why[256];
	struct stat st;

	if (stat(path, &st) < 0)
		return true;
	if (st.st_mode & (S_IRWXG | S_IRWXO))
		snprintf(why, sizeof(why),
			 "%s is accessible by %s (mode %04o); a private key must "
			 "be readable by its owner only: chmod 600 it",
			 path, st.st_mode & S_IRWXO ? "other users" : "its group",
			 (unsigned)(st.st_mode & 07777));
	else if (owner != (uid_t)-1 && st.st_uid != owner)
		snprintf(why, sizeof(why),
			 "%s is owned by uid %u, not by uid %u that ktlsd runs as "
			 "(\"user\"), which must re-read it at reload: chown it",
			 path, (unsigned)st.st_uid, (unsigned)owner);
	else
		return true;
	if (cfg->key_file_permissions == CFG_KEYPERM_WARN) {
		log_warn("%s: %s: %s (loaded anyway: key_file_permissions is \"warn\")", cfg->path,
			 json_path, why);
		return true;
	}
	config_errors_add(errs, "%s: %s: %s (or set key_file_permissions to \"warn\")", cfg->path,
			  json_path, why);
	return false;
}
