/* ktls_sockmap.c — see ktls_sockmap.h. */
#include <errno.h>
#include <linux/bpf.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "ktls.h"
#include "ktls_sockmap.h"

static int bpf_call(int cmd, union bpf_attr *attr)
{
	long r = syscall(__NR_bpf, cmd, attr, sizeof(*attr));

	return r < 0 ? -errno : (int)r;
}

static int map_insert(int map, int fd)
{
	uint32_t key = 0;
	uint64_t val = (uint64_t)fd;
	union bpf_attr attr = { .map_fd = (uint32_t)map,
				.key = (uintptr_t)&key,
				.value = (uintptr_t)&val,
				.flags = BPF_ANY };

	return bpf_call(BPF_MAP_UPDATE_ELEM, &attr);
}

/* A connected loopback pair in fds (fds[0] the client end); 0 or -errno. */
static int tcp_pair(int fds[2])
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t alen = sizeof(a);
	int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), ret = 0;

	fds[0] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	fds[1] = -1;
	if (lfd < 0 || fds[0] < 0 || bind(lfd, (struct sockaddr *)&a, sizeof(a)) < 0 ||
	    listen(lfd, 1) < 0 || getsockname(lfd, (struct sockaddr *)&a, &alen) < 0 ||
	    connect(fds[0], (struct sockaddr *)&a, sizeof(a)) < 0 ||
	    (fds[1] = accept4(lfd, NULL, NULL, SOCK_CLOEXEC)) < 0)
		ret = -errno;
	if (lfd >= 0)
		close(lfd);
	return ret;
}

static void close_pair(int fds[2])
{
	for (int i = 0; i < 2; i++)
		if (fds[i] >= 0)
			close(fds[i]);
	fds[0] = fds[1] = -1;
}

static const char *errname(int err)
{
	const char *n = strerrorname_np(-err);

	return n ? n : "?";
}

/* TCP_ULP "tls" and TLS_TX with a throwaway key, through the ktls_install() connections use. */
static int set_tx(int fd)
{
	struct ktls_keys keys = { .version = TLS1_3_VERSION, .cipher = KTLS_AES_GCM_128 };
	struct ktls_seq seq = { 0 };
	enum ktls_state state;
	char why[256];

	return ktls_install(fd, &keys, &seq, KTLS_INSTALL_TX_ONLY, &state, why, sizeof(why));
}

int ktls_sockmap_probe(char *why, size_t len)
{
	union bpf_attr create = {
		.map_type = BPF_MAP_TYPE_SOCKMAP, .key_size = 4, .value_size = 8, .max_entries = 1
	};
	int map, fds[2] = { -1, -1 }, ulp_first, map_first;

	map = bpf_call(BPF_MAP_CREATE, &create);
	if (map < 0) {
		snprintf(why, len, "no BPF sockmap (bpf(BPF_MAP_CREATE): %s)", strerror(-map));
		return map;
	}
	/* kTLS first, then the map: sk_psock_init() refuses a socket that has a ULP. */
	ulp_first = tcp_pair(fds);
	if (!ulp_first)
		ulp_first = set_tx(fds[0]);
	if (!ulp_first)
		ulp_first = map_insert(map, fds[0]);
	close_pair(fds);
	/* The map first, then kTLS: TLS_TX refuses a socket that has a psock. */
	map_first = tcp_pair(fds);
	if (!map_first)
		map_first = map_insert(map, fds[0]);
	if (!map_first)
		map_first = set_tx(fds[0]);
	close_pair(fds);
	close(map);
	if (!ulp_first || !map_first) {
		snprintf(why, len,
			 "this kernel keeps a kTLS socket in a sockmap (%s), but this "
			 "build has no ktls-sockmap tier",
			 !ulp_first ? "kTLS, then the map" : "the map, then kTLS");
		return 0;
	}
	snprintf(why, len,
		 "this kernel keeps kTLS sockets out of sockmaps (insert with TLS keys: "
		 "%s, TLS_TX in a map: %s; docs/datapath.md)",
		 errname(ulp_first), errname(map_first));
	return map_first;
}
