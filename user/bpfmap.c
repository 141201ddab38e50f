/* bpfmap — load, attach and pin ktlsd's BPF objects; the map operations the daemon makes. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <linux/magic.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "bpfmap.h"
#include "ktlsd.skel.h"
#include "log.h"

#define SELFTEST_LISTENER UINT32_MAX

static struct ktlsd_bpf *skel;
static int lock_fd = -1;       /* the pin directory, flock'ed while we own it */
static char pin_dir[PATH_MAX]; /* "" when nothing is pinned */

/* libbpf's messages (verifier logs included) go to our sink, at debug level: a failure is
 * reported by the caller with its reason. */
static int libbpf_print(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	char line[512];
	size_t n;

	if (level == LIBBPF_DEBUG || LOG_DEBUG > log_threshold)
		return 0;
	vsnprintf(line, sizeof(line), fmt, ap);
	n = strlen(line);
	if (n && line[n - 1] == '\n')
		line[n - 1] = '\0';
	log_debug("libbpf: %s", line);
	return 0;
}

bool bpfmap_loaded(void)
{
	return skel != NULL;
}

int bpfmap_load(char *why, size_t len)
{
	struct ktlsd_bpf *s = NULL;
	int ret = 0, mfd;

	if (skel)
		return 0;
	libbpf_set_print(libbpf_print);
	s = ktlsd_bpf__open_and_load();
	if (!s) {
		ret = -errno;
		snprintf(why, len, "cannot load the BPF programs (%s%s)", strerror(-ret),
			 ret == -EPERM ? "; ktlsd needs CAP_BPF and CAP_NET_ADMIN, or root" : "");
		goto cleanup;
	}
	mfd = bpf_map__fd(s->maps.sockhash);
	if (bpf_prog_attach(bpf_program__fd(s->progs.ktlsd_parser), mfd, BPF_SK_SKB_STREAM_PARSER,
			    0) < 0 ||
	    bpf_prog_attach(bpf_program__fd(s->progs.ktlsd_verdict), mfd, BPF_SK_SKB_STREAM_VERDICT,
			    0) < 0) {
		ret = -errno;
		snprintf(why, len, "cannot attach the stream parser/verdict to the sockhash (%s)",
			 strerror(-ret));
		goto cleanup;
	}
	skel = s;
	s = NULL;
cleanup:
	ktlsd_bpf__destroy(s); /* accepts NULL */
	return ret;
}

uint64_t bpfmap_cookie(int fd)
{
	uint64_t cookie = 0;
	socklen_t l = sizeof(cookie);

	if (getsockopt(fd, SOL_SOCKET, SO_COOKIE, &cookie, &l) < 0)
		return 0;
	return cookie;
}

int bpfmap_conn_put(uint64_t key, const struct ktlsd_conn *v)
{
	if (!skel)
		return -ENODEV;
	return bpf_map_update_elem(bpf_map__fd(skel->maps.conns), &key, v, BPF_ANY) < 0 ? -errno
											: 0;
}

int bpfmap_conn_get(uint64_t key, struct ktlsd_conn *v)
{
	if (!skel)
		return -ENODEV;
	return bpf_map_lookup_elem(bpf_map__fd(skel->maps.conns), &key, v) < 0 ? -errno : 0;
}

void bpfmap_conn_del(uint64_t key)
{
	if (skel)
		bpf_map_delete_elem(bpf_map__fd(skel->maps.conns), &key);
}

int bpfmap_pair_add(int cfd, uint64_t ccookie, int bfd, uint64_t bcookie, uint32_t listener)
{
	struct ktlsd_peer pc = {
		.peer = bcookie, .conn = ccookie, .listener = listener, .dir = KTLSD_DIR_C2B
	};
	struct ktlsd_peer pb = {
		.peer = ccookie, .conn = ccookie, .listener = listener, .dir = KTLSD_DIR_B2C
	};
	uint64_t fc = (uint64_t)cfd, fb = (uint64_t)bfd;
	int pfd, tfd, sfd, ret = 0;

	if (!skel)
		return -ENODEV;
	if (!ccookie || !bcookie)
		return -EINVAL;
	pfd = bpf_map__fd(skel->maps.peers);
	tfd = bpf_map__fd(skel->maps.targets);
	sfd = bpf_map__fd(skel->maps.sockhash);
	/* Both are redirect targets before either runs the programs (bpf/ktlsd.bpf.c). */
	if (bpf_map_update_elem(pfd, &ccookie, &pc, BPF_NOEXIST) < 0 ||
	    bpf_map_update_elem(pfd, &bcookie, &pb, BPF_NOEXIST) < 0 ||
	    bpf_map_update_elem(tfd, &ccookie, &fc, BPF_NOEXIST) < 0 ||
	    bpf_map_update_elem(tfd, &bcookie, &fb, BPF_NOEXIST) < 0 ||
	    bpf_map_update_elem(sfd, &ccookie, &fc, BPF_NOEXIST) < 0 ||
	    bpf_map_update_elem(sfd, &bcookie, &fb, BPF_NOEXIST) < 0) {
		ret = -errno;
		bpfmap_pair_del(ccookie, bcookie);
	}
	return ret;
}

void bpfmap_pair_del(uint64_t ccookie, uint64_t bcookie)
{
	int pfd, tfd, sfd;

	if (!skel)
		return;
	pfd = bpf_map__fd(skel->maps.peers);
	tfd = bpf_map__fd(skel->maps.targets);
	sfd = bpf_map__fd(skel->maps.sockhash);
	bpf_map_delete_elem(sfd, &ccookie);
	bpf_map_delete_elem(sfd, &bcookie);
	bpf_map_delete_elem(tfd, &ccookie);
	bpf_map_delete_elem(tfd, &bcookie);
	bpf_map_delete_elem(pfd, &ccookie);
	bpf_map_delete_elem(pfd, &bcookie);
}

/* Sum over CPUs of the counters of (listener, reason, dir); 0 when absent. */
static int bpfmap_counter(uint32_t listener, enum ktlsd_reason reason, enum ktlsd_dir dir,
			  struct ktlsd_counter *out)
{
	struct ktlsd_counter_key k = { .listener = listener,
				       .reason = (__u16)reason,
				       .dir = (__u16)dir };
	int ncpu = libbpf_num_possible_cpus(), ret = 0;
	struct ktlsd_counter *v = NULL;

	memset(out, 0, sizeof(*out));
	if (!skel)
		return -ENODEV;
	ENSURE(ncpu > 0, EINVAL);
	v = calloc((size_t)ncpu, sizeof(*v));
	ENSURE(v, ENOMEM);
	if (bpf_map_lookup_elem(bpf_map__fd(skel->maps.counters), &k, v) < 0)
		ENSURE(errno == ENOENT, errno);
	else
		for (int i = 0; i < ncpu; i++) {
			out->msgs += v[i].msgs;
			out->bytes += v[i].bytes;
		}
cleanup:
	free(v);
	return ret;
}

/* ---- startup self-test ---- */

/* A connected loopback pair: *x connects, *a is the accepted end. */
static int loopback_pair(int *x, int *a)
{
	struct sockaddr_in s = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t sl = sizeof(s);
	int lfd, ret = 0;

	*x = *a = -1;
	lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ENSURE(lfd >= 0, errno);
	ENSURE(bind(lfd, (struct sockaddr *)&s, sizeof(s)) == 0 && listen(lfd, 1) == 0 &&
		   getsockname(lfd, (struct sockaddr *)&s, &sl) == 0,
	       errno);
	*x = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ENSURE(*x >= 0, errno);
	ENSURE(connect(*x, (struct sockaddr *)&s, sizeof(s)) == 0, errno);
	*a = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	ENSURE(*a >= 0, errno);
cleanup:
	if (lfd >= 0)
		close(lfd);
	return ret;
}

/* Sends msg on from and expects exactly msg on to within a second. */
static int relay_once(int from, int to, const char *msg)
{
	char got[16];
	size_t n = strlen(msg), have = 0;
	struct pollfd p = { .fd = to, .events = POLLIN };

	if (send(from, msg, n, MSG_NOSIGNAL) != (ssize_t)n)
		return -errno;
	while (have < n) {
		if (poll(&p, 1, 1000) <= 0)
			return -ETIMEDOUT;
		ssize_t r = recv(to, got + have, sizeof(got) - have, MSG_DONTWAIT);

		if (r <= 0)
			return r == 0 ? -EPIPE : -errno;
		have += (size_t)r;
	}
	return have == n && memcmp(got, msg, n) == 0 ? 0 : -EPROTO;
}

int bpfmap_selftest(char *why, size_t len)
{
	int x = -1, a = -1, y = -1, b = -1, ret = 0;
	uint64_t ca = 0, cb = 0;
	struct ktlsd_conn conn = { .tier = KTLSD_TIER_SOCKMAP }, after;
	struct ktlsd_counter ctr;
	bool paired = false;

	ENSURE(skel, ENODEV);
	GUARD(loopback_pair(&x, &a));
	GUARD(loopback_pair(&y, &b));
	ca = bpfmap_cookie(a);
	cb = bpfmap_cookie(b);
	ENSURE(ca && cb, EOPNOTSUPP);
	GUARD(bpfmap_conn_put(ca, &conn));
	GUARD(bpfmap_pair_add(a, ca, b, cb, SELFTEST_LISTENER));
	paired = true;
	GUARD(relay_once(x, y, "ping"));
	GUARD(relay_once(y, x, "pong!"));
	GUARD(bpfmap_conn_get(ca, &after));
	ENSURE(after.last_ns != 0, EPROTO); /* the verdict found the connection's entry */
	GUARD(bpfmap_counter(SELFTEST_LISTENER, KTLSD_REASON_REDIRECT, KTLSD_DIR_C2B, &ctr));
	ENSURE(ctr.msgs >= 1 && ctr.bytes >= 4, EPROTO);
cleanup:
	if (ret < 0)
		snprintf(why, len, "a loopback connection did not relay through the sockhash (%s)",
			 strerror(-ret));
	if (paired)
		bpfmap_pair_del(ca, cb);
	if (skel) {
		for (unsigned d = KTLSD_DIR_C2B; d <= KTLSD_DIR_B2C; d++) {
			struct ktlsd_counter_key k = { .listener = SELFTEST_LISTENER,
						       .reason = KTLSD_REASON_REDIRECT,
						       .dir = (__u16)d };

			bpf_map_delete_elem(bpf_map__fd(skel->maps.counters), &k);
		}
		bpfmap_conn_del(ca);
	}
	for (int *fd = (int[]){ x, a, y, b }, i = 0; i < 4; i++)
		if (fd[i] >= 0)
			close(fd[i]);
	return ret;
}

/* ---- pinning ---- */

/* The parent of dir must be a bpf filesystem; /sys/fs/bpf is mounted when nothing is (as systemd
 * does at boot), anything else is the operator's to set up. */
static int check_bpffs(const char *dir, char *why, size_t len)
{
	char parent[PATH_MAX];
	struct statfs sfs;
	char *slash;

	snprintf(parent, sizeof(parent), "%s", dir);
	slash = strrchr(parent, '/');
	if (!slash || slash == parent) {
		snprintf(why, len, "%s: must be a directory inside a bpf filesystem", dir);
		return -EINVAL;
	}
	*slash = '\0';
	if (statfs(parent, &sfs) < 0) {
		snprintf(why, len, "%s: %s", parent, strerror(errno));
		return -errno;
	}
	if (sfs.f_type == BPF_FS_MAGIC)
		return 0;
	if (strcmp(parent, "/sys/fs/bpf") == 0) {
		if (mount("bpf", parent, "bpf", 0, "mode=0700") == 0) {
			log_info("bpf: mounted a bpf filesystem on /sys/fs/bpf");
			return 0;
		}
		snprintf(why, len,
			 "/sys/fs/bpf is not a bpf filesystem and mounting one failed (%s)",
			 strerror(errno));
		return -errno;
	}
	snprintf(why, len, "%s is not on a bpf filesystem (mount -t bpf bpf %s)", parent, parent);
	return -ENOTDIR;
}

/* Unlinks what a previous ktlsd pinned in the (locked) directory. Returns how many. */
static int remove_stale(int dfd)
{
	int d = dup(dfd), n = 0;
	DIR *dir = d >= 0 ? fdopendir(d) : NULL;
	struct dirent *e;

	if (!dir) {
		if (d >= 0)
			close(d);
		return -errno;
	}
	while ((e = readdir(dir)))
		if (e->d_name[0] != '.' && unlinkat(dfd, e->d_name, 0) == 0)
			n++;
	closedir(dir);
	return n;
}

static void unpin_all(void)
{
	char path[PATH_MAX + 32];
	struct bpf_program *p;
	struct bpf_map *m;

	if (!pin_dir[0] || !skel)
		return;
	bpf_object__for_each_map(m, skel->obj)
	{
		snprintf(path, sizeof(path), "%s/%s", pin_dir, bpf_map__name(m));
		unlink(path);
	}
	bpf_object__for_each_program(p, skel->obj)
	{
		snprintf(path, sizeof(path), "%s/%s", pin_dir, bpf_program__name(p));
		unlink(path);
	}
	rmdir(pin_dir);
	pin_dir[0] = '\0';
}

int bpfmap_pin(const char *dir, char *why, size_t len)
{
	char path[PATH_MAX + 32];
	struct bpf_program *p;
	struct bpf_map *m;
	int ret = 0, fd = -1, stale;

	ENSURE(skel, ENODEV);
	if (strlen(dir) >= sizeof(pin_dir)) {
		snprintf(why, len, "path too long");
		return -ENAMETOOLONG;
	}
	GUARD(check_bpffs(dir, why, len));
	if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
		ret = -errno;
		snprintf(why, len, "mkdir %s: %s", dir, strerror(-ret));
		goto cleanup;
	}
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0 || flock(fd, LOCK_EX | LOCK_NB) < 0) {
		ret = -errno;
		snprintf(why, len,
			 ret == -EWOULDBLOCK ? "%s is in use by another running ktlsd" : "%s: %s",
			 dir, strerror(-ret));
		goto cleanup;
	}
	stale = remove_stale(fd);
	if (stale > 0)
		log_info("bpf: replaced %d stale pin%s a previous ktlsd left in %s", stale,
			 stale == 1 ? "" : "s", dir);
	snprintf(pin_dir, sizeof(pin_dir), "%s", dir);
	bpf_object__for_each_map(m, skel->obj)
	{
		snprintf(path, sizeof(path), "%s/%s", dir, bpf_map__name(m));
		if (bpf_map__pin(m, path) < 0) {
			ret = -errno;
			snprintf(why, len, "pin %s: %s", path, strerror(-ret));
			goto cleanup;
		}
	}
	bpf_object__for_each_program(p, skel->obj)
	{
		snprintf(path, sizeof(path), "%s/%s", dir, bpf_program__name(p));
		if (bpf_program__pin(p, path) < 0) {
			ret = -errno;
			snprintf(why, len, "pin %s: %s", path, strerror(-ret));
			goto cleanup;
		}
	}
	lock_fd = fd;
	fd = -1;
cleanup:
	if (ret < 0)
		unpin_all();
	if (fd >= 0)
		close(fd);
	return ret;
}

void bpfmap_unload(void)
{
	unpin_all();
	if (lock_fd >= 0)
		close(lock_fd);
	lock_fd = -1;
	ktlsd_bpf__destroy(skel);
	skel = NULL;
}
