#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "proxyproto.h"

static const unsigned char v2_sig[12] = { 0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
					  0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A };

enum {
	PP2_TYPE_ALPN = 0x01,
	PP2_TYPE_AUTHORITY = 0x02,
	PP2_TYPE_SSL = 0x20,
	PP2_SUBTYPE_SSL_VERSION = 0x21,
	PP2_SUBTYPE_SSL_CN = 0x22,
	PP2_SUBTYPE_SSL_CIPHER = 0x23,
	PP2_CLIENT_SSL = 0x01,
	PP2_CLIENT_CERT_CONN = 0x02,
};

static bool same_ip_family(const struct proxyproto_info *in)
{
	int f = in->src->ss_family;

	return (f == AF_INET || f == AF_INET6) && f == in->dst->ss_family;
}

static void ip_port(const struct sockaddr_storage *ss, char *ip, size_t len, unsigned *port)
{
	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *s = (const struct sockaddr_in *)ss;

		inet_ntop(AF_INET, &s->sin_addr, ip, (socklen_t)len);
		*port = ntohs(s->sin_port);
	} else {
		const struct sockaddr_in6 *s = (const struct sockaddr_in6 *)ss;

		inet_ntop(AF_INET6, &s->sin6_addr, ip, (socklen_t)len);
		*port = ntohs(s->sin6_port);
	}
}

static int encode_v1(const struct proxyproto_info *in, unsigned char *out)
{
	char sip[INET6_ADDRSTRLEN], dip[INET6_ADDRSTRLEN];
	unsigned sport, dport;

	if (!same_ip_family(in))
		return snprintf((char *)out, PROXYPROTO_MAX, "PROXY UNKNOWN\r\n");
	ip_port(in->src, sip, sizeof(sip), &sport);
	ip_port(in->dst, dip, sizeof(dip), &dport);
	return snprintf((char *)out, PROXYPROTO_MAX, "PROXY %s %s %s %u %u\r\n",
			in->src->ss_family == AF_INET ? "TCP4" : "TCP6", sip, dip, sport, dport);
}

/* Appends a TLV. One that does not fit whole is left out: a cut SNI or CN would mislead the
 * backend. (Real values are far smaller: the worst case of five 255-byte strings does not fit.) */
static size_t tlv(unsigned char *out, size_t at, uint8_t type, const void *val, size_t len)
{
	if (at + 3 + len > PROXYPROTO_MAX)
		return at;
	out[at] = type;
	out[at + 1] = (uint8_t)(len >> 8);
	out[at + 2] = (uint8_t)len;
	memcpy(out + at + 3, val, len);
	return at + 3 + len;
}

static size_t tlv_str(unsigned char *out, size_t at, uint8_t type, const char *s)
{
	return s && *s ? tlv(out, at, type, s, strnlen(s, 255)) : at;
}

static int encode_v2(const struct proxyproto_info *in, unsigned char *out)
{
	size_t at = 16, ssl_at, len;

	memcpy(out, v2_sig, sizeof(v2_sig));
	out[12] = 0x21; /* version 2, PROXY */
	if (!same_ip_family(in)) {
		out[13] = 0x00; /* UNSPEC: the backend ignores the address block */
	} else if (in->src->ss_family == AF_INET) {
		const struct sockaddr_in *s = (const void *)in->src, *d = (const void *)in->dst;

		out[13] = 0x11; /* TCP over IPv4 */
		memcpy(out + at, &s->sin_addr, 4);
		memcpy(out + at + 4, &d->sin_addr, 4);
		memcpy(out + at + 8, &s->sin_port, 2);
		memcpy(out + at + 10, &d->sin_port, 2);
		at += 12;
	} else {
		const struct sockaddr_in6 *s = (const void *)in->src, *d = (const void *)in->dst;

		out[13] = 0x21; /* TCP over IPv6 */
		memcpy(out + at, &s->sin6_addr, 16);
		memcpy(out + at + 16, &d->sin6_addr, 16);
		memcpy(out + at + 32, &s->sin6_port, 2);
		memcpy(out + at + 34, &d->sin6_port, 2);
		at += 36;
	}
	at = tlv_str(out, at, PP2_TYPE_ALPN, in->alpn);
	at = tlv_str(out, at, PP2_TYPE_AUTHORITY, in->sni);
	if (in->tls) {
		uint32_t verify = htonl(in->client_cert_verified ? 0 : 1);

		ssl_at = at;
		out[at + 3] = PP2_CLIENT_SSL | (in->client_cn ? PP2_CLIENT_CERT_CONN : 0);
		memcpy(out + at + 4, &verify, 4);
		at += 8;
		at = tlv_str(out, at, PP2_SUBTYPE_SSL_VERSION, in->version);
		at = tlv_str(out, at, PP2_SUBTYPE_SSL_CIPHER, in->cipher);
		at = tlv_str(out, at, PP2_SUBTYPE_SSL_CN, in->client_cn);
		len = at - ssl_at - 3;
		out[ssl_at] = PP2_TYPE_SSL;
		out[ssl_at + 1] = (uint8_t)(len >> 8);
		out[ssl_at + 2] = (uint8_t)len;
	}
	len = at - 16;
	out[14] = (uint8_t)(len >> 8);
	out[15] = (uint8_t)len;
	return (int)at;
}

int proxyproto_encode(int version, const struct proxyproto_info *info, unsigned char *out)
{
	if (version == 1)
		return encode_v1(info, out);
	if (version == 2)
		return encode_v2(info, out);
	return -EINVAL;
}
