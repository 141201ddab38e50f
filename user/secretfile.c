#include <errno.h>
#include <string.h>
#include <sys/stat.h>

#include "errmsg.h"
#include "secretfile.h"

int secretfile_check(int fd, const char *path, char *why, size_t whylen)
{
	struct stat st;

	if (fstat(fd, &st) < 0) {
		int e = errno;

		errmsg_set(why, whylen, "%s: %s", path, strerror(e));
		return -e;
	}
	if (!S_ISREG(st.st_mode)) {
		errmsg_set(why, whylen, "%s: not a regular file", path);
		return -EPERM;
	}
	if (st.st_mode & (S_IRWXG | S_IRWXO)) {
		errmsg_set(why, whylen,
			   "%s: mode %04o lets other users read or change a secret; "
			   "chmod 600 it (owner only)",
			   path, (unsigned)(st.st_mode & 07777));
		return -EPERM;
	}
	return 0;
}
