/* libFuzzer target: the PROXY protocol encoder on arbitrary addresses and strings. Checks the
 * invariants a backend relies on: the header never exceeds PROXYPROTO_MAX, v1 is one CRLF-ended
 * line, and v2's length field covers exactly what follows its 16-byte preamble. */
#include <netinet/in.h>
#include <stdint.h>
#include <string.h>

#include "proxyproto.h"

static size_t take(const uint8_t **d, size_t *n, void *out, size_t want)
{
	size_t k = want < *n ? want : *n;

	memcpy(out, *d, k);
	*d += k;
	*n -= k;
	return k;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const sa_family_t fams[] = { AF_INET, AF_INET6, AF_UNIX, 0 };
	struct sockaddr_storage src, dst;
	char strs[5][300];
	uint8_t hdr[4] = { 0 };
	unsigned char out[PROXYPROTO_MAX + 64];
	struct proxyproto_info in = { .src = &src, .dst = &dst };
	int n;

	memset(&src, 0, sizeof(src));
	memset(&dst, 0, sizeof(dst));
	take(&data, &size, hdr, sizeof(hdr));
	take(&data, &size, (uint8_t *)&src + sizeof(sa_family_t), sizeof(struct sockaddr_in6) - 2);
	take(&data, &size, (uint8_t *)&dst + sizeof(sa_family_t), sizeof(struct sockaddr_in6) - 2);
	src.ss_family = fams[hdr[0] % 4];
	dst.ss_family = fams[hdr[1] % 4];
	for (int i = 0; i < 5; i++) {
		size_t len = size ? *data % 300 : 0;

		if (size) {
			data++;
			size--;
		}
		memset(strs[i], 0, sizeof(strs[i]));
		take(&data, &size, strs[i], len < sizeof(strs[i]) ? len : sizeof(strs[i]) - 1);
	}
	in.tls = hdr[2] & 1;
	in.client_cert_verified = hdr[2] & 2;
	in.alpn = hdr[3] & 1 ? strs[0] : NULL;
	in.sni = hdr[3] & 2 ? strs[1] : NULL;
	in.version = hdr[3] & 4 ? strs[2] : NULL;
	in.cipher = hdr[3] & 8 ? strs[3] : NULL;
	in.client_cn = hdr[3] & 16 ? strs[4] : NULL;

	n = proxyproto_encode(1, &in, out);
	if (n <= 0 || n > PROXYPROTO_MAX || memcmp(out + n - 2, "\r\n", 2) != 0 ||
	    memchr(out, '\n', (size_t)n - 1))
		__builtin_trap();
	n = proxyproto_encode(2, &in, out);
	if (n < 16 || n > PROXYPROTO_MAX || (out[14] << 8 | out[15]) != n - 16)
		__builtin_trap();
	return 0;
}
