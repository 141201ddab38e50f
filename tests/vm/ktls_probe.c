/*
 * ktls_probe: proves that kernel TLS works in the tests/vm guest, and records what the kernel
 * does when kTLS meets a BPF sockmap or sockhash (docs/notes/ktls.md, docs/notes/ktls-sockmap.md).
 *
 * One line per check:
 *   loopback  plain TCP over 127.0.0.1 and ::1                            PASS or FAIL
 *   ktls      TLS 1.2 and 1.3 x AES-GCM-128, AES-GCM-256, AES-CCM-128,
 *             ChaCha20-Poly1305, both directions (see ktls_case())        PASS, FAIL or SKIP
 *   sockmap   TLS ULP against sockmap/sockhash membership, with no
 *             program, a stream verdict (alone or with a stream parser),
 *             an skb verdict, a msg verdict or both kinds attached        findings: errno names
 *   redirect  a plain socket in a sockmap whose sk_skb or sk_msg program
 *             redirects to a kTLS socket, the kTLS socket made before or
 *             after it entered the map                                    findings
 *
 * "ktls_probe -t in-map|deleted-verdict" runs only one step under investigation (see
 * trace_step()) so that a guest script can trace it with ftrace.
 *
 * Exit status: 0 if every loopback and ktls check passed, 1 if one failed, 77 if the kernel has
 * no TLS ULP (TCP_ULP "tls" fails with ENOENT, as on the development hosts).
 *
 * Build: cc -O2 -Wall -Wextra -Werror -o ktls_probe ktls_probe.c (no libraries). Run as root:
 * the sockmap section needs CAP_BPF and CAP_NET_ADMIN.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <linux/bpf.h>
#include <linux/tls.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <unistd.h>

#define EXIT_SKIP 77
#define PAYLOAD_SIZE 40000    /* three records: 16384 + 16384 + 7232 bytes */
#define FIRST_RECORD_SIZE 100 /* the first record, read raw off the wire */
#define TLS_HEADER_SIZE 5
#define TLS_TAG_SIZE 16
#define TLS_APPLICATION_DATA 23
#define SOCKET_TIMEOUT_S 5 /* a kTLS bug shows as EAGAIN, not a hung VM */
#define SOL_TLS_UNKNOWN_OPT 99
#define NOT_TRIED 1 /* a step result that is neither 0 nor a negative errno */

/* Where the fields of one tls12_crypto_info_* struct are. */
struct cipher {
	const char *name;
	uint16_t type;
	size_t info_size;
	size_t iv_off, iv_size;
	size_t key_off, key_size;
	size_t salt_off, salt_size;
	size_t rec_seq_off;
	size_t tls12_nonce_size; /* explicit nonce carried in each TLS 1.2 record */
};

#define CIPHER(label, TYPE, info, nonce)                                                           \
	{                                                                                          \
		.name = label, .type = TLS_CIPHER_##TYPE, .info_size = sizeof(struct info),        \
		.iv_off = offsetof(struct info, iv), .iv_size = TLS_CIPHER_##TYPE##_IV_SIZE,       \
		.key_off = offsetof(struct info, key), .key_size = TLS_CIPHER_##TYPE##_KEY_SIZE,   \
		.salt_off = offsetof(struct info, salt),                                           \
		.salt_size = TLS_CIPHER_##TYPE##_SALT_SIZE,                                        \
		.rec_seq_off = offsetof(struct info, rec_seq), .tls12_nonce_size = nonce,          \
	}

static const struct cipher ciphers[] = {
	CIPHER("AES-GCM-128", AES_GCM_128, tls12_crypto_info_aes_gcm_128, 8),
	CIPHER("AES-GCM-256", AES_GCM_256, tls12_crypto_info_aes_gcm_256, 8),
	CIPHER("AES-CCM-128", AES_CCM_128, tls12_crypto_info_aes_ccm_128, 8),
	CIPHER("CHACHA20-POLY1305", CHACHA20_POLY1305, tls12_crypto_info_chacha20_poly1305, 0),
};

union crypto_info {
	struct tls12_crypto_info_aes_gcm_128 gcm128;
	struct tls12_crypto_info_aes_gcm_256 gcm256;
	struct tls12_crypto_info_aes_ccm_128 ccm128;
	struct tls12_crypto_info_chacha20_poly1305 chacha;
};

static const struct {
	const char *name;
	uint16_t version;
} versions[] = {
	{ "TLS1.2", TLS_1_2_VERSION },
	{ "TLS1.3", TLS_1_3_VERSION },
};

/* "ok" for 0, "n/a" for NOT_TRIED, else the errno's name ("EINVAL") for a negative errno. */
static const char *err_name(int err)
{
	const char *name;

	if (err == 0)
		return "ok";
	if (err == NOT_TRIED)
		return "n/a";
	name = strerrorname_np(-err);
	return name ? name : "E?";
}

/*
 * Fills a crypto info for cipher c: key, IV and salt derived from seed, record sequence
 * number seq (big-endian, as the kernel wants it).
 */
static void crypto_info_fill(union crypto_info *u, const struct cipher *c, uint16_t version,
			     uint8_t seed, uint64_t seq)
{
	unsigned char *base = (unsigned char *)u;
	size_t i;

	memset(u, 0, sizeof(*u));
	u->gcm128.info.version = version;
	u->gcm128.info.cipher_type = c->type;
	for (i = 0; i < c->key_size; i++)
		base[c->key_off + i] = (unsigned char)(seed + i);
	for (i = 0; i < c->iv_size; i++)
		base[c->iv_off + i] = (unsigned char)(seed * 3 + i);
	for (i = 0; i < c->salt_size; i++)
		base[c->salt_off + i] = (unsigned char)(seed * 7 + i);
	for (i = 0; i < 8; i++)
		base[c->rec_seq_off + i] = (unsigned char)(seq >> (56 - 8 * i));
}

/* setsockopt() returning 0 or a negative errno. */
static int sockopt(int fd, int level, int name, const void *val, socklen_t len)
{
	return setsockopt(fd, level, name, val, len) ? -errno : 0;
}

static int set_ulp(int fd)
{
	return sockopt(fd, SOL_TCP, TCP_ULP, "tls", sizeof("tls"));
}

static int set_key(int fd, int dir, const struct cipher *c, uint16_t version, uint8_t seed,
		   uint64_t seq)
{
	union crypto_info info;

	crypto_info_fill(&info, c, version, seed, seq);
	return sockopt(fd, SOL_TLS, dir, &info, c->info_size);
}

static void close_pair(int fds[2])
{
	for (int i = 0; i < 2; i++) {
		if (fds[i] >= 0)
			close(fds[i]);
		fds[i] = -1;
	}
}

/*
 * Connects fds[0] to fds[1] over TCP on the loopback address of family (AF_INET or AF_INET6),
 * with send and receive timeouts. Returns 0 or a negative errno; on error fds are -1.
 */
static int tcp_pair(int family, int fds[2])
{
	struct timeval tv = { .tv_sec = SOCKET_TIMEOUT_S };
	struct sockaddr_storage ss = { .ss_family = family };
	socklen_t len =
	    family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
	int lfd = -1, err = 0;

	fds[0] = fds[1] = -1;
	if (family == AF_INET)
		((struct sockaddr_in *)&ss)->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	else
		((struct sockaddr_in6 *)&ss)->sin6_addr = in6addr_loopback;

	lfd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (lfd < 0 || bind(lfd, (struct sockaddr *)&ss, len) || listen(lfd, 1) ||
	    getsockname(lfd, (struct sockaddr *)&ss, &len)) {
		err = -errno;
		goto cleanup;
	}
	fds[0] = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fds[0] < 0 || connect(fds[0], (struct sockaddr *)&ss, len)) {
		err = -errno;
		goto cleanup;
	}
	fds[1] = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	if (fds[1] < 0) {
		err = -errno;
		goto cleanup;
	}
	for (int i = 0; i < 2; i++) {
		if (setsockopt(fds[i], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) ||
		    setsockopt(fds[i], SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv))) {
			err = -errno;
			goto cleanup;
		}
	}
cleanup:
	if (lfd >= 0)
		close(lfd);
	if (err)
		close_pair(fds);
	return err;
}

static int send_all(int fd, const unsigned char *buf, size_t len)
{
	while (len > 0) {
		ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);

		if (n < 0)
			return -errno;
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Reads exactly len bytes; -EPIPE if the peer closed first. */
static int recv_all(int fd, unsigned char *buf, size_t len)
{
	while (len > 0) {
		ssize_t n = recv(fd, buf, len, 0);

		if (n < 0)
			return -errno;
		if (n == 0)
			return -EPIPE;
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

static void pattern_fill(unsigned char *buf, size_t len, uint32_t seed)
{
	for (size_t i = 0; i < len; i++) {
		seed = seed * 1103515245u + 12345u;
		buf[i] = (unsigned char)(seed >> 16);
	}
}

/*
 * Sends len pattern bytes from "from" and checks that "to" receives them byte-exact.
 * Returns 0, a negative errno, or -EBADMSG if the bytes differ.
 */
static int transfer(int from, int to, size_t len, uint32_t seed)
{
	static unsigned char sent[PAYLOAD_SIZE], got[PAYLOAD_SIZE];
	int err;

	pattern_fill(sent, len, seed);
	memset(got, 0, len);
	err = send_all(from, sent, len);
	if (!err)
		err = recv_all(to, got, len);
	if (!err && memcmp(sent, got, len))
		err = -EBADMSG;
	return err;
}

/* A /proc/net/tls_stat counter, or -1 if it is missing. */
static long long tls_stat(const char *name)
{
	char key[64];
	long long val, found = -1;
	FILE *f = fopen("/proc/net/tls_stat", "re");

	if (!f)
		return -1;
	while (fscanf(f, "%63s %lld", key, &val) == 2) {
		if (!strcmp(key, name)) {
			found = val;
			break;
		}
	}
	fclose(f);
	return found;
}

/*
 * Reads the first record "a" sent under TLS_TX raw from "b" and checks that it is an
 * encrypted application-data record of the right length: proof that kTLS encrypts, not just
 * that two kTLS sockets agree.
 */
static int check_wire_record(int a, int b, const struct cipher *c, uint16_t version, char *why,
			     size_t why_len)
{
	unsigned char plain[FIRST_RECORD_SIZE], rec[TLS_HEADER_SIZE + FIRST_RECORD_SIZE + 64];
	size_t body = version == TLS_1_2_VERSION
			  ? c->tls12_nonce_size + FIRST_RECORD_SIZE + TLS_TAG_SIZE
			  : FIRST_RECORD_SIZE + 1 + TLS_TAG_SIZE; /* + inner content type */
	int err;

	pattern_fill(plain, sizeof(plain), 7);
	err = send_all(a, plain, sizeof(plain));
	if (!err)
		err = recv_all(b, rec, TLS_HEADER_SIZE + body);
	if (err) {
		snprintf(why, why_len, "first record: %s", err_name(err));
		return err;
	}
	if (rec[0] != TLS_APPLICATION_DATA || rec[1] != 3 || rec[2] != 3 ||
	    (size_t)(rec[3] << 8 | rec[4]) != body ||
	    memmem(rec, TLS_HEADER_SIZE + body, plain, 16)) {
		snprintf(why, why_len,
			 "first record on the wire is %02x %02x%02x len %u, want 17 0303 len %zu, "
			 "encrypted",
			 rec[0], rec[1], rec[2], rec[3] << 8 | rec[4], body);
		return -EPROTO;
	}
	return 0;
}

/*
 * One kTLS case on a fresh 127.0.0.1 pair (a, b):
 *   1. TCP_ULP "tls" on both; ENOENT means no kTLS in this kernel.
 *   2. TLS_TX on a from record sequence 5; a's first record is read raw by b and checked.
 *   3. TLS_RX on b from sequence 6, as a handover after one record would do it.
 *   4. PAYLOAD_SIZE bytes a -> b, then with a second key b -> a, byte-exact.
 *   5. /proc/net/tls_stat: TlsTxSw and TlsRxSw up by 2, TlsDecryptError unchanged.
 * Returns 0 or a negative errno with the reason in why.
 */
static int ktls_case(uint16_t version, const struct cipher *c, char *why, size_t why_len)
{
	long long tx0 = tls_stat("TlsTxSw"), rx0 = tls_stat("TlsRxSw");
	long long dec0 = tls_stat("TlsDecryptError");
	int fds[2] = { -1, -1 }, err;
	const char *step; /* NULL once why holds the reason */

	step = "tcp pair";
	err = tcp_pair(AF_INET, fds);
	if (err)
		goto cleanup;
	step = "TCP_ULP";
	err = set_ulp(fds[0]);
	if (!err)
		err = set_ulp(fds[1]);
	if (err)
		goto cleanup;
	step = "TLS_TX a";
	err = set_key(fds[0], TLS_TX, c, version, 1, 5);
	if (err)
		goto cleanup;
	step = NULL;
	err = check_wire_record(fds[0], fds[1], c, version, why, why_len);
	if (err)
		goto cleanup;
	step = "TLS_RX b";
	err = set_key(fds[1], TLS_RX, c, version, 1, 6);
	if (err)
		goto cleanup;
	step = "data a->b";
	err = transfer(fds[0], fds[1], PAYLOAD_SIZE, 1);
	if (err)
		goto cleanup;
	step = "TLS_TX b";
	err = set_key(fds[1], TLS_TX, c, version, 2, 0);
	if (err)
		goto cleanup;
	step = "TLS_RX a";
	err = set_key(fds[0], TLS_RX, c, version, 2, 0);
	if (err)
		goto cleanup;
	step = "data b->a";
	err = transfer(fds[1], fds[0], PAYLOAD_SIZE, 2);
	if (err)
		goto cleanup;
	step = NULL;
	if (tls_stat("TlsTxSw") - tx0 != 2 || tls_stat("TlsRxSw") - rx0 != 2 ||
	    tls_stat("TlsDecryptError") != dec0) {
		snprintf(why, why_len,
			 "tls_stat moved TlsTxSw %+lld TlsRxSw %+lld TlsDecryptError %+lld, want "
			 "+2 +2 +0",
			 tls_stat("TlsTxSw") - tx0, tls_stat("TlsRxSw") - rx0,
			 tls_stat("TlsDecryptError") - dec0);
		err = -EPROTO;
	}
cleanup:
	if (err && step)
		snprintf(why, why_len, "%s: %s (%s)", step, err_name(err), strerror(-err));
	close_pair(fds);
	return err;
}

/* Plain TCP both ways over the loopback address of family; prints PASS or FAIL. */
static int loopback_case(int family)
{
	int fds[2], err;

	err = tcp_pair(family, fds);
	if (!err)
		err = transfer(fds[0], fds[1], PAYLOAD_SIZE, 3);
	if (!err)
		err = transfer(fds[1], fds[0], PAYLOAD_SIZE, 4);
	close_pair(fds);
	if (err)
		printf("loopback %-30s FAIL %s (%s)\n",
		       family == AF_INET ? "tcp 127.0.0.1" : "tcp [::1]", err_name(err),
		       strerror(-err));
	else
		printf("loopback %-30s PASS\n", family == AF_INET ? "tcp 127.0.0.1" : "tcp [::1]");
	return err;
}

static int bpf_call(int cmd, union bpf_attr *attr)
{
	long r = syscall(__NR_bpf, cmd, attr, sizeof(*attr));

	return r < 0 ? -errno : (int)r;
}

/* A map of type (sockmap or sockhash) with 4-byte keys and 8-byte values; fd or -errno. */
static int map_create(enum bpf_map_type type)
{
	union bpf_attr attr = {
		.map_type = type,
		.key_size = 4,
		.value_size = 8,
		.max_entries = 4,
	};

	return bpf_call(BPF_MAP_CREATE, &attr);
}

#define INSN(c, d, s, o, i)                                                                        \
	((struct bpf_insn){ .code = (c), .dst_reg = (d), .src_reg = (s), .off = (o), .imm = (i) })
#define MOV64_IMM(d, i) INSN(BPF_ALU64 | BPF_MOV | BPF_K, d, 0, 0, i)
#define EXIT_INSN() INSN(BPF_JMP | BPF_EXIT, 0, 0, 0, 0)

/* The programs the probe attaches, written as raw instructions (no compiler, no libbpf). */
enum prog_kind {
	PROG_PASS,	   /* return SK_PASS */
	PROG_PARSER_LEN,   /* stream parser: the whole skb is one message (return skb->len) */
	PROG_SKB_REDIRECT, /* return bpf_sk_redirect_map(skb, map, 1, 0): egress of key 1 */
	PROG_MSG_REDIRECT, /* return bpf_msg_redirect_map(msg, map, 1, 0): egress of key 1 */
};

/* Loads a program of kind and type (map is the redirect target map) and attaches it to map as
 * attach_type; 0 or -errno. *prog_fd is the loaded program or -1. */
static int prog_attach(int map, enum prog_kind kind, enum bpf_prog_type type,
		       enum bpf_attach_type attach_type, int *prog_fd)
{
	struct bpf_insn insns[8];
	unsigned n = 0;
	union bpf_attr load = { .prog_type = type, .license = (uintptr_t) "GPL" };
	union bpf_attr attach = { .target_fd = map, .attach_type = attach_type };

	switch (kind) {
	case PROG_PASS:
		insns[n++] = MOV64_IMM(BPF_REG_0, SK_PASS);
		break;
	case PROG_PARSER_LEN:
		insns[n++] = INSN(BPF_LDX | BPF_W | BPF_MEM, BPF_REG_0, BPF_REG_1,
				  offsetof(struct __sk_buff, len), 0);
		break;
	case PROG_SKB_REDIRECT:
	case PROG_MSG_REDIRECT:
		insns[n++] = INSN(BPF_LD | BPF_DW | BPF_IMM, BPF_REG_2, BPF_PSEUDO_MAP_FD, 0, map);
		insns[n++] = INSN(0, 0, 0, 0, 0);
		insns[n++] = MOV64_IMM(BPF_REG_3, 1);
		insns[n++] = MOV64_IMM(BPF_REG_4, 0);
		insns[n++] = INSN(BPF_JMP | BPF_CALL, 0, 0, 0,
				  kind == PROG_SKB_REDIRECT ? BPF_FUNC_sk_redirect_map
							    : BPF_FUNC_msg_redirect_map);
		break;
	}
	insns[n++] = EXIT_INSN();
	load.insns = (uintptr_t)insns;
	load.insn_cnt = n;
	*prog_fd = bpf_call(BPF_PROG_LOAD, &load);
	if (*prog_fd < 0)
		return *prog_fd;
	attach.attach_bpf_fd = *prog_fd;
	return bpf_call(BPF_PROG_ATTACH, &attach);
}

/* What a map gets before any socket is inserted, by the name used in the output. */
static const struct prog_set {
	const char *name;
	unsigned parser : 1, stream_verdict : 1, skb_verdict : 1, msg_verdict : 1;
} prog_sets[] = {
	{ .name = "none" },
	{ .name = "stream_verdict", .stream_verdict = 1 },
	{ .name = "parser+verdict", .parser = 1, .stream_verdict = 1 },
	{ .name = "skb_verdict", .skb_verdict = 1 },
	{ .name = "msg_verdict", .msg_verdict = 1 },
	{ .name = "parser+verdict+msg", .parser = 1, .stream_verdict = 1, .msg_verdict = 1 },
};

/* Attaches the SK_PASS programs of set to map; 0 or the first -errno. Closes nothing: the
 * program fds go to fds[0..3] (-1 when unused) for the caller to close. */
static int attach_set(int map, const struct prog_set *set, int fds[4])
{
	int err = 0;

	fds[0] = fds[1] = fds[2] = fds[3] = -1;
	if (set->parser)
		err = prog_attach(map, PROG_PARSER_LEN, BPF_PROG_TYPE_SK_SKB,
				  BPF_SK_SKB_STREAM_PARSER, &fds[0]);
	if (!err && set->stream_verdict)
		err = prog_attach(map, PROG_PASS, BPF_PROG_TYPE_SK_SKB, BPF_SK_SKB_STREAM_VERDICT,
				  &fds[1]);
	if (!err && set->skb_verdict)
		err =
		    prog_attach(map, PROG_PASS, BPF_PROG_TYPE_SK_SKB, BPF_SK_SKB_VERDICT, &fds[2]);
	if (!err && set->msg_verdict)
		err =
		    prog_attach(map, PROG_PASS, BPF_PROG_TYPE_SK_MSG, BPF_SK_MSG_VERDICT, &fds[3]);
	return err;
}

static void close_fds(int *fds, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (fds[i] >= 0)
			close(fds[i]);
}

static int map_insert_at(int map, uint32_t key, int fd)
{
	uint64_t val = (uint64_t)fd;
	union bpf_attr attr = {
		.map_fd = map,
		.key = (uintptr_t)&key,
		.value = (uintptr_t)&val,
		.flags = BPF_ANY,
	};

	return bpf_call(BPF_MAP_UPDATE_ELEM, &attr);
}

static int map_insert(int map, int fd)
{
	return map_insert_at(map, 0, fd);
}

static int map_remove(int map)
{
	uint32_t key = 0;
	union bpf_attr attr = { .map_fd = map, .key = (uintptr_t)&key };

	return bpf_call(BPF_MAP_DELETE_ELEM, &attr);
}

/* Result of inserting a fresh socket prepared by prep (0 or -errno) into map. */
static int insert_prepared(int map, int (*prep)(int fds[2]))
{
	int fds[2], err;

	err = tcp_pair(AF_INET, fds);
	if (!err)
		err = prep(fds);
	if (!err) {
		err = map_insert(map, fds[0]);
		if (!err)
			map_remove(map);
	}
	close_pair(fds);
	return err;
}

static int prep_ulp(int fds[2])
{
	return set_ulp(fds[0]);
}

static int prep_ktls(int fds[2])
{
	int err = set_ulp(fds[0]);

	if (!err)
		err = set_key(fds[0], TLS_TX, &ciphers[0], TLS_1_2_VERSION, 1, 0);
	if (!err)
		err = set_key(fds[0], TLS_RX, &ciphers[0], TLS_1_2_VERSION, 1, 0);
	return err;
}

/* The ULP name getsockopt(TCP_ULP) reports, "none", or the errno's name. */
static const char *ulp_name(int fd, char *buf, socklen_t len)
{
	memset(buf, 0, len);
	if (getsockopt(fd, SOL_TCP, TCP_ULP, buf, &len))
		return err_name(-errno);
	return buf[0] ? buf : "none";
}

/*
 * The socket-in-map scenario: insert a plain socket, then try to make it a kTLS socket; delete
 * it from the map, retry what failed, and if both directions are then set, move data both ways
 * through kTLS.
 */
static void sockmap_in_map(const char *label, int map)
{
	const struct cipher *c = &ciphers[0];
	int fds[2], one = 1, err;
	int ulp, tx, rx, zc, unknown, del, tx2 = NOT_TRIED, rx2 = NOT_TRIED, data = NOT_TRIED;
	char name[16];

	err = tcp_pair(AF_INET, fds);
	if (!err)
		err = map_insert(map, fds[0]);
	if (err) {
		printf("sockmap  %-34s in map: insert plain socket=%s\n", label, err_name(err));
		close_pair(fds);
		return;
	}
	ulp = set_ulp(fds[0]);
	tx = set_key(fds[0], TLS_TX, c, TLS_1_2_VERSION, 1, 0);
	rx = set_key(fds[0], TLS_RX, c, TLS_1_2_VERSION, 2, 0);
	zc = sockopt(fds[0], SOL_TLS, TLS_TX_ZEROCOPY_RO, &one, sizeof(one));
	unknown = sockopt(fds[0], SOL_TLS, SOL_TLS_UNKNOWN_OPT, &one, sizeof(one));
	printf("sockmap  %-34s in map: TCP_ULP=%s TLS_TX=%s TLS_RX=%s TLS_TX_ZEROCOPY_RO=%s "
	       "SOL_TLS/%d=%s\n",
	       label, err_name(ulp), err_name(tx), err_name(rx), err_name(zc), SOL_TLS_UNKNOWN_OPT,
	       err_name(unknown));

	del = map_remove(map);
	if (!ulp && tx)
		tx2 = set_key(fds[0], TLS_TX, c, TLS_1_2_VERSION, 1, 0);
	if (!ulp && rx)
		rx2 = set_key(fds[0], TLS_RX, c, TLS_1_2_VERSION, 2, 0);
	if ((!tx || !tx2) && (!rx || !rx2)) {
		data = set_ulp(fds[1]);
		if (!data)
			data = set_key(fds[1], TLS_RX, c, TLS_1_2_VERSION, 1, 0);
		if (!data)
			data = set_key(fds[1], TLS_TX, c, TLS_1_2_VERSION, 2, 0);
		if (!data)
			data = transfer(fds[0], fds[1], PAYLOAD_SIZE, 5);
		if (!data)
			data = transfer(fds[1], fds[0], PAYLOAD_SIZE, 6);
	}
	printf("sockmap  %-34s deleted (%s): TCP_ULP reads %s, TLS_TX=%s TLS_RX=%s data both "
	       "ways=%s\n",
	       label, err_name(del), ulp_name(fds[0], name, sizeof(name)), err_name(tx2),
	       err_name(rx2), err_name(data));
	close_pair(fds);
}

/* Findings for one map type and one set of attached programs. */
static void sockmap_scenario(enum bpf_map_type type, const struct prog_set *set)
{
	char label[64];
	int map, progs[4], err;

	snprintf(label, sizeof(label), "%s progs=%s",
		 type == BPF_MAP_TYPE_SOCKMAP ? "sockmap" : "sockhash", set->name);
	map = map_create(type);
	if (map < 0) {
		printf("sockmap  %-34s map create=%s\n", label, err_name(map));
		return;
	}
	err = attach_set(map, set, progs);
	if (err) {
		printf("sockmap  %-34s attach=%s\n", label, err_name(err));
		goto cleanup;
	}
	printf("sockmap  %-34s insert: TLS-ULP socket=%s kTLS TX+RX socket=%s\n", label,
	       err_name(insert_prepared(map, prep_ulp)), err_name(insert_prepared(map, prep_ktls)));
	sockmap_in_map(label, map);
cleanup:
	close_fds(progs, 4);
	close(map);
}

/* What the peer of the redirect target received within a second: "nothing", "N bytes
 * plaintext" (the bytes sent, unencrypted), "N bytes TLS record" (starts with an
 * application_data header) or "N bytes other". */
static const char *peer_got(int fd, const unsigned char *sent, size_t len, char *buf, size_t blen)
{
	unsigned char got[4096];
	struct timeval tv = { .tv_sec = 1 };
	ssize_t n;

	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	n = recv(fd, got, sizeof(got), 0);
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
		return "nothing";
	if (n < 0)
		return err_name(-errno);
	if (n == 0)
		return "EOF";
	snprintf(buf, blen, "%zd bytes %s", n,
		 (size_t)n <= len && !memcmp(got, sent, (size_t)n)	   ? "plaintext"
		 : n >= 5 && got[0] == TLS_APPLICATION_DATA && got[1] == 3 ? "TLS record"
									   : "other");
	return buf;
}

/*
 * Redirect from a plain socket B (the backend side, key 0) to a kTLS socket K (the client side,
 * key 1): the program (kind) redirects everything to the egress of key 1. With sk_skb, bytes
 * arrive at B from its peer; with sk_msg, B itself sends. ktls_first: K gets TCP_ULP and TLS_TX
 * before the insert, else K is inserted plain and gets them after.
 */
static void redirect_case(enum prog_kind kind, bool ktls_first)
{
	static const unsigned char msg[] = "backend bytes for the client";
	const char *label =
	    kind == PROG_SKB_REDIRECT ? "sk_skb stream_verdict" : "sk_msg msg_verdict";
	int map, prog_fd = -1, parser_fd = -1, b[2] = { -1, -1 }, k[2] = { -1, -1 };
	int err, ulp = NOT_TRIED, tx = NOT_TRIED, ins_k, ins_b, snd;
	char buf[64];

	map = map_create(BPF_MAP_TYPE_SOCKMAP);
	if (map < 0) {
		printf("redirect %-34s map create=%s\n", label, err_name(map));
		return;
	}
	if (kind == PROG_SKB_REDIRECT) {
		err = prog_attach(map, PROG_PARSER_LEN, BPF_PROG_TYPE_SK_SKB,
				  BPF_SK_SKB_STREAM_PARSER, &parser_fd);
		if (!err)
			err = prog_attach(map, kind, BPF_PROG_TYPE_SK_SKB,
					  BPF_SK_SKB_STREAM_VERDICT, &prog_fd);
	} else {
		err = prog_attach(map, kind, BPF_PROG_TYPE_SK_MSG, BPF_SK_MSG_VERDICT, &prog_fd);
	}
	if (!err)
		err = tcp_pair(AF_INET, b);
	if (!err)
		err = tcp_pair(AF_INET, k);
	if (err) {
		printf("redirect %-34s setup=%s\n", label, err_name(err));
		goto cleanup;
	}
	if (ktls_first) {
		ulp = set_ulp(k[0]);
		tx = set_key(k[0], TLS_TX, &ciphers[0], TLS_1_2_VERSION, 1, 0);
		ins_k = map_insert_at(map, 1, k[0]);
	} else {
		ins_k = map_insert_at(map, 1, k[0]);
		ulp = set_ulp(k[0]);
		tx = set_key(k[0], TLS_TX, &ciphers[0], TLS_1_2_VERSION, 1, 0);
	}
	ins_b = map_insert_at(map, 0, b[0]);
	if (kind == PROG_SKB_REDIRECT)
		snd = send_all(b[1], msg, sizeof(msg));
	else
		snd = send_all(b[0], msg, sizeof(msg));
	printf("redirect %-34s %s: insert K=%s TCP_ULP=%s TLS_TX=%s insert B=%s send=%s -> K's "
	       "peer got %s\n",
	       label, ktls_first ? "kTLS then map" : "map then kTLS", err_name(ins_k),
	       err_name(ulp), err_name(tx), err_name(ins_b), err_name(snd),
	       peer_got(k[1], msg, sizeof(msg), buf, sizeof(buf)));
cleanup:
	close_pair(b);
	close_pair(k);
	if (prog_fd >= 0)
		close(prog_fd);
	if (parser_fd >= 0)
		close(parser_fd);
	close(map);
}

/*
 * The steps under investigation, alone, for tracing (-t MODE): "in-map" inserts a plain socket
 * into a sockmap with no program, then sets TCP_ULP and TLS_TX; "deleted-verdict" inserts it
 * into a sockmap with a stream verdict, sets TCP_ULP, deletes it, then sets TLS_TX. Returns 0 if
 * TLS_TX succeeded.
 */
static int trace_step(const char *mode)
{
	bool deleted = !strcmp(mode, "deleted-verdict");
	int fds[2] = { -1, -1 }, map, prog_fd = -1, err = 0;

	map = map_create(BPF_MAP_TYPE_SOCKMAP);
	if (map < 0)
		return map;
	if (deleted)
		err = prog_attach(map, PROG_PASS, BPF_PROG_TYPE_SK_SKB, BPF_SK_SKB_STREAM_VERDICT,
				  &prog_fd);
	if (!err)
		err = tcp_pair(AF_INET, fds);
	if (!err)
		err = map_insert(map, fds[0]);
	if (!err)
		err = set_ulp(fds[0]);
	if (!err && deleted)
		err = map_remove(map);
	if (!err) {
		err = set_key(fds[0], TLS_TX, &ciphers[0], TLS_1_2_VERSION, 1, 0);
		printf("trace: %s TLS_TX=%s\n", mode, err_name(err));
	} else {
		printf("trace: %s setup=%s\n", mode, err_name(err));
	}
	close_pair(fds);
	if (prog_fd >= 0)
		close(prog_fd);
	close(map);
	return err;
}

int main(int argc, char **argv)
{
	int failed = 0, skipped = 0;
	char why[256];

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc > 2 && !strcmp(argv[1], "-t"))
		return trace_step(argv[2]) ? 1 : 0;
	failed |= loopback_case(AF_INET) != 0;
	failed |= loopback_case(AF_INET6) != 0;

	for (size_t v = 0; v < sizeof(versions) / sizeof(versions[0]); v++) {
		for (size_t c = 0; c < sizeof(ciphers) / sizeof(ciphers[0]); c++) {
			int err = ktls_case(versions[v].version, &ciphers[c], why, sizeof(why));
			const char *result = err == -ENOENT ? "SKIP" : err ? "FAIL" : "PASS";

			printf("ktls     %-6s %-23s %s%s%s\n", versions[v].name, ciphers[c].name,
			       result, err ? " " : "", err ? why : "");
			skipped |= err == -ENOENT;
			failed |= err && err != -ENOENT;
		}
	}

	for (int t = 0; t < 2; t++)
		for (size_t p = 0; p < sizeof(prog_sets) / sizeof(prog_sets[0]); p++)
			sockmap_scenario(t ? BPF_MAP_TYPE_SOCKHASH : BPF_MAP_TYPE_SOCKMAP,
					 &prog_sets[p]);
	for (int first = 1; first >= 0; first--) {
		redirect_case(PROG_SKB_REDIRECT, first);
		redirect_case(PROG_MSG_REDIRECT, first);
	}

	if (failed)
		return 1;
	return skipped ? EXIT_SKIP : 0;
}
