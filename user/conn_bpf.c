#include <string.h>

#include "bpfmap.h"
#include "conn_data.h"
#include "conn_bpf.h"
#include "state.h"

static enum ktlsd_state conn_state(const struct conn *c)
{
	if (c->state == CONN_CLOSING || c->state == CONN_FLUSH)
		return KTLSD_STATE_CLOSING;
	if (c->flags & (CF_CIN_EOF | CF_BIN_EOF | CF_C_SHUT | CF_B_SHUT | CF_C_DONE))
		return KTLSD_STATE_HALF_CLOSED;
	return KTLSD_STATE_FORWARDING;
}

void conn_bpf_open(struct conn *c)
{
	/* dp_sockmap makes its own entry, before the verdict may count into it. */
	if (!bpfmap_loaded() || c->acct.tier == KTLSD_TIER_NONE ||
	    c->acct.tier == KTLSD_TIER_SOCKMAP)
		return;
	c->acct.bpf_want = true;
	if (c->tls.ssl && SSL_is_init_finished(c->tls.ssl)) {
		const SSL_CIPHER *ci = SSL_get_current_cipher(c->tls.ssl);

		c->acct.tls_version = (uint16_t)SSL_version(c->tls.ssl);
		c->acct.cipher_id = ci ? SSL_CIPHER_get_protocol_id(ci) : 0;
	}
}

/* The entry, made at the first tick of the connection's forwarding life. */
static void entry_create(struct conn *c)
{
	struct ktlsd_conn e = {
		.listener = (uint32_t)c->l->index,
		.state = conn_state(c),
		.tier = (enum ktlsd_tier)c->acct.tier,
		.bytes_c2b = c->bytes_c2b,
		.bytes_b2c = c->bytes_b2c,
		.start_ns = c->start_ms * 1000000ull,
		.last_ns = c->active_ms * 1000000ull,
		.tls_version = c->acct.tls_version,
		.cipher_suite = c->acct.cipher_id,
	};

	c->acct.bpf_want = false;
	c->acct.cookie = bpfmap_cookie(c->cfd);
	if (!c->acct.cookie)
		return;
	if (c->bfd >= 0)
		e.backend_cookie = bpfmap_cookie(c->bfd);
	if (c->acct.cipher_id && c->acct.cipher)
		strncpy(e.cipher, c->acct.cipher, sizeof(e.cipher) - 1);
	if (bpfmap_conn_put(c->acct.cookie, &e) < 0)
		c->acct.cookie = 0; /* map full: this connection is not listed */
	c->acct.bpf_state = (uint8_t)e.state;
}

void conn_bpf_sync(struct conn *c)
{
	struct ktlsd_conn e;

	if (c->acct.bpf_want) {
		entry_create(c);
		return;
	}
	/* The sockmap tier keeps its entry itself (dp_sockmap.c: the kernel moves its bytes). Other
	 * tiers: written when ktlsd's own counts moved since the last tick (stats_conn_flush calls
	 * this before it takes them) or its state changed (a half-close), so an idle connection
	 * costs no syscall. */
	if (!c->acct.cookie || c->acct.tier == KTLSD_TIER_SOCKMAP ||
	    (c->bytes_c2b == c->acct.c2b && c->bytes_b2c == c->acct.b2c &&
	     c->acct.bpf_state == conn_state(c)))
		return;
	if (bpfmap_conn_get(c->acct.cookie, &e) < 0)
		return;
	e.bytes_c2b = c->bytes_c2b;
	e.bytes_b2c = c->bytes_b2c;
	e.state = conn_state(c);
	e.last_ns = c->active_ms * 1000000ull;
	if (bpfmap_conn_put(c->acct.cookie, &e) < 0)
		return; /* the entry stays as it was; the next tick retries */
	c->acct.bpf_state = (uint8_t)e.state;
}

void conn_bpf_close(struct conn *c)
{
	if (c->acct.cookie)
		bpfmap_conn_del(c->acct.cookie);
	c->acct.cookie = 0;
	c->acct.bpf_want = false;
}
