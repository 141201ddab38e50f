#include <errno.h>
#include <grp.h>
#include <linux/capability.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "log.h"
#include "privdrop.h"

/* Capabilities kept after the drop (see privdrop.h). */
static const int keep[] = { CAP_NET_BIND_SERVICE };

static bool number(const char *s, unsigned long *out)
{
	char *end;

	errno = 0;
	*out = strtoul(s, &end, 10);
	return *s && !*end && !errno && *out < (unsigned long)(uid_t)-1;
}

int privdrop_resolve(const struct config *cfg, struct privdrop_id *id, struct cfg_errors *errs)
{
	struct passwd *pw;
	struct group *gr;
	unsigned long n;

	memset(id, 0, sizeof(*id));
	if (!cfg->user)
		return 0;
	if ((pw = getpwnam(cfg->user))) {
		id->uid = pw->pw_uid;
		id->gid = pw->pw_gid;
	} else if (number(cfg->user, &n)) {
		id->uid = (uid_t)n;
		id->gid = (gid_t)n;
		if ((pw = getpwuid(id->uid)))
			id->gid = pw->pw_gid;
	} else {
		config_errors_add(errs, "%s: user: no user named \"%s\"", cfg->path, cfg->user);
		return -EINVAL;
	}
	if (id->uid == 0) {
		config_errors_add(errs, "%s: user: \"%s\" is root; name an unprivileged user",
				  cfg->path, cfg->user);
		return -EINVAL;
	}
	if (cfg->group) {
		if ((gr = getgrnam(cfg->group))) {
			id->gid = gr->gr_gid;
		} else if (number(cfg->group, &n)) {
			id->gid = (gid_t)n;
		} else {
			config_errors_add(errs, "%s: group: no group named \"%s\"", cfg->path,
					  cfg->group);
			return -EINVAL;
		}
	}
	id->enabled = true;
	return 0;
}

static int capset_keep(void)
{
	struct __user_cap_header_struct h = { .version = _LINUX_CAPABILITY_VERSION_3 };
	struct __user_cap_data_struct d[_LINUX_CAPABILITY_U32S_3] = { { 0 } };

	for (size_t i = 0; i < ARRAY_SIZE(keep); i++) {
		d[keep[i] / 32].effective |= 1u << (keep[i] % 32);
		d[keep[i] / 32].permitted |= 1u << (keep[i] % 32);
	}
	return syscall(SYS_capset, &h, d) < 0 ? -errno : 0;
}

/* Drops every capability but those kept from the bounding set, so that nothing this process
 * executes could ever regain them (needs CAP_SETPCAP: done while still root). */
static int bound_keep(void)
{
	for (int c = 0; prctl(PR_CAPBSET_READ, c, 0, 0, 0) >= 0; c++) {
		bool kept = false;

		for (size_t i = 0; i < ARRAY_SIZE(keep); i++)
			kept |= keep[i] == c;
		if (!kept && prctl(PR_CAPBSET_DROP, c, 0, 0, 0) < 0)
			return -errno;
	}
	return 0;
}

int privdrop_apply(const struct privdrop_id *id)
{
	const char *step = NULL;
	int ret = 0;

	if (!id->enabled)
		return 0;
#define STEP(what, call)                                                                           \
	do {                                                                                       \
		step = what;                                                                       \
		ENSURE((call) == 0, errno);                                                        \
	} while (0)
	STEP("PR_SET_KEEPCAPS", prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0));
	STEP("PR_CAPBSET_DROP", (ret = bound_keep()) < 0 ? (errno = -ret, -1) : 0);
	STEP("PR_CAP_AMBIENT_CLEAR_ALL", prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0));
	STEP("setgroups", setgroups(1, &id->gid));
	STEP("setresgid", setresgid(id->gid, id->gid, id->gid));
	STEP("setresuid", setresuid(id->uid, id->uid, id->uid));
	STEP("capset", (ret = capset_keep()) < 0 ? (errno = -ret, -1) : 0);
	STEP("PR_SET_KEEPCAPS", prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0));
	STEP("PR_SET_NO_NEW_PRIVS", prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0));
#undef STEP
	step = NULL;
	/* The uid change must hold: a process that can become root again has dropped nothing. */
	ENSURE(setresuid(0, 0, 0) < 0, EPERM);
	log_info("running as uid %u gid %u with CAP_NET_BIND_SERVICE only (docs/security.md)",
		 (unsigned)id->uid, (unsigned)id->gid);
	return 0;
cleanup:
	log_err("cannot drop privileges to uid %u gid %u: %s: %s", (unsigned)id->uid,
		(unsigned)id->gid, step ? step : "setresuid(0) still works", strerror(-ret));
	return ret;
}
