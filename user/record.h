/* record — follows the TLS record framing of a byte stream without decrypting anything.
 *
 * The kTLS handoff needs two facts OpenSSL 3.0 does not expose: where the record boundaries are
 * (so ktlsd reads the client's handshake exactly up to its last record, leaving everything after
 * it in the socket for the kernel), and how many records each side sent under the current keys
 * (the kernel's rec_seq). Feed every byte of one direction, in order, to one tracker. */
#ifndef KTLSD_RECORD_H
#define KTLSD_RECORD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tls_wire.h"

struct record_track {
	uint8_t hdr[TLS_RECORD_HEADER];
	uint8_t have;	    /* header bytes of the current record seen */
	uint32_t left;	    /* body bytes of the current record still to come */
	uint32_t records;   /* complete records */
	uint32_t after_ccs; /* complete records after the last ChangeCipherSpec record */
	uint8_t body8[8];   /* the first body bytes of the current record */
	uint8_t body8_have;
	uint8_t last8[8]; /* ... of the last complete record: its TLS 1.2 explicit nonce */
};

/* Accounts n more bytes of the stream. */
static inline void record_feed(struct record_track *t, const uint8_t *p, size_t n)
{
	while (n) {
		if (t->have < TLS_RECORD_HEADER) {
			size_t need = (size_t)TLS_RECORD_HEADER - t->have;
			size_t k = need < n ? need : n;

			for (size_t i = 0; i < k; i++)
				t->hdr[t->have++] = p[i];
			p += k;
			n -= k;
			if (t->have < TLS_RECORD_HEADER)
				return;
			t->left = (uint32_t)t->hdr[3] << 8 | t->hdr[4];
		} else {
			size_t k = t->left < n ? t->left : n;

			for (size_t i = 0; i < k && t->body8_have < sizeof(t->body8); i++)
				t->body8[t->body8_have++] = p[i];
			t->left -= (uint32_t)k;
			p += k;
			n -= k;
		}
		if (t->have == TLS_RECORD_HEADER && t->left == 0) {
			if (t->body8_have == sizeof(t->body8))
				for (size_t i = 0; i < sizeof(t->body8); i++)
					t->last8[i] = t->body8[i];
			t->body8_have = 0;
			t->records++;
			t->after_ccs =
			    t->hdr[0] == TLS_CT_CHANGE_CIPHER_SPEC ? 0 : t->after_ccs + 1;
			t->have = 0;
		}
	}
}

/* How many more bytes end the current record's header or body; never 0. */
static inline size_t record_want(const struct record_track *t)
{
	return t->have < TLS_RECORD_HEADER ? (size_t)(TLS_RECORD_HEADER - t->have)
					   : (t->left ? t->left : TLS_RECORD_HEADER);
}

/* True at a record boundary. */
static inline bool record_aligned(const struct record_track *t)
{
	return t->have == 0;
}

#endif
