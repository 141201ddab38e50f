/* tls_wire — the TLS wire-format constants ktlsd reads and writes itself (record framing,
 * handshake and alert messages, the extensions it looks into), each with the section of RFC 8446
 * (TLS 1.3), RFC 5246 (TLS 1.2) or RFC 6066 (extensions) that defines it. Numbers only, no types
 * or code, so any module may include it, with or without OpenSSL. Only the constants the code
 * uses are here. A file that hands these numbers to OpenSSL or gets them from it may use
 * OpenSSL's names (SSL_AD_*, SSL3_RT_*) instead, but one naming per file. */
#ifndef KTLSD_TLS_WIRE_H
#define KTLSD_TLS_WIRE_H

/* The record layer. */
#define TLS_RECORD_HEADER 5	/* type, version, length (RFC 8446 §5.1, RFC 5246 §6.2.1) */
#define TLS_PROTOCOL_MAJOR 3	/* every version is {3, x} (RFC 5246 §6.2.1 and Appendix E.1) */
#define TLS_PROTOCOL_MINOR_12 3 /* {3, 3}: TLS 1.2, TLS 1.3's legacy_version (RFC 8446 §5.1) */

#define TLS_MAX_PLAINTEXT 16384u  /* 2^14: TLSPlaintext.length (RFC 8446 §5.1, RFC 5246 §6.2.1) */
#define TLS_MAX_EXPANSION_13 256  /* TLSCiphertext.length ≤ 2^14 + 256 (RFC 8446 §5.2) */
#define TLS_MAX_EXPANSION_12 2048 /* TLSCiphertext.length ≤ 2^14 + 2048 (RFC 5246 §6.2.3) */

#define TLS_AEAD_TAG 16	     /* AES-GCM, ChaCha20-Poly1305 (RFC 5116 §5.1, RFC 8439 §2.8) */
#define TLS_EXPLICIT_NONCE 8 /* TLS 1.2 GCM nonce_explicit (RFC 5246 §6.2.3.3, RFC 5288 §3) */

/* ContentType (RFC 8446 §5.1, RFC 5246 §6.2.1). */
#define TLS_CT_CHANGE_CIPHER_SPEC 20 /* RFC 8446 §5.1, RFC 5246 §7.1 */
#define TLS_CT_ALERT 21		     /* RFC 8446 §6, RFC 5246 §7.2 */
#define TLS_CT_HANDSHAKE 22	     /* RFC 8446 §4, RFC 5246 §7.4 */
#define TLS_CT_APPLICATION_DATA 23   /* RFC 8446 §5.1, RFC 5246 §10 */

/* Handshake messages. */
#define TLS_HS_HEADER 4	      /* msg_type, uint24 length (RFC 8446 §4, RFC 5246 §7.4) */
#define TLS_HS_CLIENT_HELLO 1 /* HandshakeType client_hello (RFC 8446 §4, RFC 5246 §7.4) */
#define TLS_HS_KEY_UPDATE 24  /* HandshakeType key_update, TLS 1.3 only (RFC 8446 §4.6.3) */

/* ExtensionType (RFC 8446 §4.2). */
#define TLS_EXT_SERVER_NAME 0		/* RFC 6066 §3 */
#define TLS_EXT_SUPPORTED_GROUPS 10	/* RFC 8446 §4.2.7 */
#define TLS_EXT_SIGNATURE_ALGORITHMS 13 /* RFC 8446 §4.2.3, RFC 5246 §7.4.1.4.1 */
#define TLS_EXT_SUPPORTED_VERSIONS 43	/* RFC 8446 §4.2.1 */

/* An alert is a level, then a description (RFC 8446 §6, RFC 5246 §7.2). */
#define TLS_ALERT_LEVEL_WARNING 1	/* RFC 8446 §6, RFC 5246 §7.2 */
#define TLS_ALERT_LEVEL_FATAL 2		/* RFC 8446 §6, RFC 5246 §7.2 */
#define TLS_ALERT_CLOSE_NOTIFY 0	/* RFC 8446 §6.1, RFC 5246 §7.2.1 */
#define TLS_ALERT_UNEXPECTED_MESSAGE 10 /* RFC 8446 §6.2, RFC 5246 §7.2.2 */
#define TLS_ALERT_BAD_RECORD_MAC 20	/* RFC 8446 §6.2, RFC 5246 §7.2.2 */
#define TLS_ALERT_RECORD_OVERFLOW 22	/* RFC 8446 §6.2, RFC 5246 §7.2.2 */
#define TLS_ALERT_ILLEGAL_PARAMETER 47	/* RFC 8446 §6.2, RFC 5246 §7.2.2 */
#define TLS_ALERT_DECODE_ERROR 50	/* RFC 8446 §6.2, RFC 5246 §7.2.2 */
#define TLS_ALERT_PROTOCOL_VERSION 70	/* RFC 8446 §6.2, RFC 5246 §7.2.2 */
#define TLS_ALERT_INTERNAL_ERROR 80	/* RFC 8446 §6.2, RFC 5246 §7.2.2 */
#define TLS_ALERT_USER_CANCELED 90	/* RFC 8446 §6.1, RFC 5246 §7.2.2 */
#define TLS_ALERT_NO_RENEGOTIATION 100	/* TLS 1.2 only, always a warning (RFC 5246 §7.2.2) */

/* Not wire format: Linux's socket level for the kernel TLS options (include/linux/socket.h), for
 * a libc whose <sys/socket.h> lacks it. */
#ifndef SOL_TLS
#define SOL_TLS 282
#endif

#endif
