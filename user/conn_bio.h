/* conn_bio — the BIO an SSL of a connection reads and writes through: ktlsd's own buffers, no
 * memory-BIO copy. The client side's SSL (handshake.c) uses cin/cout and feeds every byte it
 * writes to the tx record tracker (the kTLS handoff counts them) and every byte it reads to
 * ssl_rx (the record layer handoff starts at a record boundary); the backend side's SSL
 * (backend_tls.c) uses btls.in/btls.out. */
#ifndef KTLSD_CONN_BIO_H
#define KTLSD_CONN_BIO_H

#include <stdbool.h>

#include <openssl/ssl.h>

struct conn;

/* Makes c's BIO for the client (backend=false) or the backend side and gives it to ssl, which
 * owns it from then on. Returns 0 or -ENOMEM. */
int conn_bio_attach(struct conn *c, SSL *ssl, bool backend) __attribute__((warn_unused_result));

#endif
