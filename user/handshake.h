/* handshake — the server side of the TLS handshake, one SSL per connection. The SSL reads the
 * client's bytes from conn.cin and writes its records to conn.cout through a BIO over those
 * buffers, so the ring does all socket I/O and OpenSSL never blocks or makes a syscall. */
#ifndef KTLSD_HANDSHAKE_H
#define KTLSD_HANDSHAKE_H

#include <stdbool.h>

#include <openssl/ssl.h>

#include <stdbool.h>

#include <openssl/ssl.h>

struct conn;

int handshake_start(struct conn *c, SSL_CTX *ctx) __attribute__((warn_unused_result));
/* Advances the handshake: 1 = finished, 0 = needs I/O, -ECONNRESET = the client closed or reset
 * first, -EPROTO = a TLS failure (why says why in both cases). */
int handshake_step(struct conn *c, const char **why);
/* After the handshake: true when the client has already ended its sending side — a close_notify
 * or a FIN with no application data before it. Such a connection has nothing to forward, so the
 * backend is not connected (a TLS health check or port probe: handshake, then close). Reads what
 * the socket holds without waiting (not for kernel handoff candidates, whose bytes after the
 * Finished are the kernel's); application data stays buffered in cin and the SSL for the
 * datapath. */
bool handshake_client_done(struct conn *c);
/* Describes a failed SSL call (OpenSSL's reason, or the alert we got) into a static buffer. */
const char *handshake_error(SSL *ssl, int ret);

#endif
