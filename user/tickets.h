/* tickets — stateless session tickets (TLS 1.2 tickets and TLS 1.3 PSK tickets) for listeners
 * with session_resumption: true. No session is ever kept on the server (SSL_SESS_CACHE_OFF).
 *
 * A listener's tickets are sealed (AES-256-CBC + HMAC-SHA256, OpenSSL's ticket format) with a key
 * ring that has one encrypting key and any number of decrypt-only ones:
 *
 *   key file  session_tickets.key_file: one key per line, the base64 of 80 random bytes
 *             (`openssl rand 80 | base64 -w0`), oldest first, '#' comments. With one key it
 *             encrypts; with more, the last but one encrypts and every key decrypts (HAProxy's
 *             tls-ticket-keys rule): append a new key, drop the first, reload every instance, and
 *             no instance ever sees a ticket sealed with a key it lacks. Read at startup and on
 *             every reload; it must be readable by its owner only. Several ktlsd instances with
 *             the same file resume each other's sessions.
 *   generated without a key file: a random key made at startup encrypts for rotate_s seconds,
 *             then decrypts for another rotate_s; the ring survives reloads (it is kept by
 *             listener name), not restarts.
 *
 * The ring's keys are not used directly: each listener derives its own (HKDF-SHA256 with the
 * listener's name), so one file may serve several listeners while a ticket still resumes only on
 * the listener (name) that issued it, with that listener's certificates and policy. A ticket
 * decrypted with a key other than the encrypting one is renewed. Nothing here logs a key. */
#ifndef KTLSD_TICKETS_H
#define KTLSD_TICKETS_H

#include <openssl/ssl.h>

#include "config.h"

/* Sets up tickets on the server context of listener index (session_resumption must be on):
 * loads the key file or takes the listener's generated ring, installs the ticket callback and
 * the session lifetime. Problems go to errs naming the file and the JSON path. */
int tickets_attach(SSL_CTX *ctx, const struct config *cfg, size_t index,
		   struct cfg_errors *errs) __must_check;

#endif
