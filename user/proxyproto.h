/* proxyproto — the PROXY protocol header ktlsd sends to a backend before any client byte
 * (HAProxy's proxy-protocol.txt): v1 text, or v2 binary with TLVs for ALPN, SNI (authority) and
 * the TLS session (version, cipher, verified client certificate CN). Pure encoding: no I/O. */
#ifndef KTLSD_PROXYPROTO_H
#define KTLSD_PROXYPROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

/* What the header says about the connection; NULL strings are left out. */
struct proxyproto_info {
	const struct sockaddr_storage *src; /* the client */
	const struct sockaddr_storage *dst; /* the listener address it connected to */
	bool tls;			    /* the client spoke TLS to ktlsd */
	const char *alpn, *sni, *version, *cipher, *client_cn;
	bool client_cert_verified;
};

#define PROXYPROTO_MAX 1024

/* Writes a v1 (version 1) or v2 (version 2) header into out (at least PROXYPROTO_MAX bytes).
 * Returns its length, or -EINVAL for an unknown version. Addresses of different or non-IP
 * families give the protocol's UNKNOWN/LOCAL form. */
int proxyproto_encode(int version, const struct proxyproto_info *info, unsigned char *out);

#endif
