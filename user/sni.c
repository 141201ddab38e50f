/* sni.c — see sni.h. Two passes over the input: the first walks the record headers only (cheap,
 * so a client dribbling one byte per segment costs little) until the records hold the whole
 * ClientHello; the second copies the fragments into one buffer and parses the message. Every
 * read is bounds-checked against what remains. */
#include <string.h>

#include "hostname.h"
#include "sni.h"
#include "tls_wire.h"

#define NAME_TYPE_HOST 0 /* NameType host_name (RFC 6066 §3) */

static uint16_t get16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

/* A cursor over a byte range: every take checks the length first. */
struct cur {
	const uint8_t *p;
	size_t left;
};

static bool take(struct cur *c, size_t n, const uint8_t **out)
{
	if (n > c->left)
		return false;
	if (out)
		*out = c->p;
	c->p += n;
	c->left -= n;
	return true;
}

static bool take8(struct cur *c, size_t *v)
{
	const uint8_t *p;

	if (!take(c, 1, &p))
		return false;
	*v = p[0];
	return true;
}

static bool take16(struct cur *c, size_t *v)
{
	const uint8_t *p;

	if (!take(c, 2, &p))
		return false;
	*v = get16(p);
	return true;
}

int sni_server_name(const uint8_t *ext, size_t len, char *out, size_t outlen, bool *invalid)
{
	struct cur c = { ext, len };
	bool found = false;
	size_t list;

	*invalid = false;
	out[0] = '\0';
	if (!take16(&c, &list) || list != c.left || list == 0)
		return -1;
	while (c.left) {
		const uint8_t *name;
		size_t type, nl;

		if (!take8(&c, &type) || !take16(&c, &nl) || nl == 0 || !take(&c, nl, &name))
			return -1;
		if (type != NAME_TYPE_HOST)
			continue;
		if (found || *invalid)
			return -1; /* RFC 6066: at most one name of a type */
		for (size_t i = 0; i < nl; i++)
			if (name[i] < 0x21 || name[i] > 0x7e)
				*invalid = true;
		/* 253 characters, one more for a trailing dot */
		if (*invalid || nl > SNI_MAX_NAME + 1 ||
		    hostname_norm((const char *)name, nl, out, outlen) < 0 || out[0] == '.' ||
		    out[strlen(out) - 1] == '.' || strstr(out, ".."))
			*invalid = true; /* not a DNS name: empty labels */
		else
			found = true;
	}
	if (!found)
		out[0] = '\0';
	return found ? 1 : 0;
}

/* The ClientHello body (after the 4-byte handshake header). */
static enum sni_result parse_hello(const uint8_t *body, size_t len, struct sni_hello *out,
				   const char **why)
{
	uint8_t seen[65536 / 8]; /* extension types met so far */
	struct cur c = { body, len };
	const uint8_t *version;
	size_t n;

	if (!take(&c, 2, &version) || version[0] != TLS_PROTOCOL_MAJOR) {
		*why = "ClientHello version is not 3.x";
		return SNI_MALFORMED;
	}
	if (!take(&c, 32, NULL) || !take8(&c, &n) || n > 32 || !take(&c, n, NULL)) {
		*why = "ClientHello random or session id truncated";
		return SNI_MALFORMED;
	}
	if (!take16(&c, &n) || n < 2 || n % 2 || !take(&c, n, NULL)) {
		*why = "bad cipher suite list";
		return SNI_MALFORMED;
	}
	if (!take8(&c, &n) || n < 1 || !take(&c, n, NULL)) {
		*why = "bad compression method list";
		return SNI_MALFORMED;
	}
	if (c.left == 0)
		return SNI_DONE; /* no extensions, so no SNI */
	if (!take16(&c, &n) || n != c.left) {
		*why = "extensions length does not match the ClientHello";
		return SNI_MALFORMED;
	}
	memset(seen, 0, sizeof(seen));
	while (c.left) {
		const uint8_t *data;
		size_t type, elen;

		if (!take16(&c, &type) || !take16(&c, &elen) || !take(&c, elen, &data)) {
			*why = "extension runs past the ClientHello";
			return SNI_MALFORMED;
		}
		if (seen[type / 8] & (1u << (type % 8))) {
			*why = "duplicate extension";
			return SNI_MALFORMED;
		}
		seen[type / 8] |= (uint8_t)(1u << (type % 8));
		if (type != TLS_EXT_SERVER_NAME)
			continue;
		int r =
		    sni_server_name(data, elen, out->name, sizeof(out->name), &out->name_invalid);

		if (r < 0) {
			*why = "malformed server_name extension";
			return SNI_MALFORMED;
		}
		out->has_sni = r == 1;
	}
	return SNI_DONE;
}

/* Checks the header of the record at in[off..] as far as it has arrived. */
static enum sni_result check_header(const uint8_t *in, size_t avail, bool first, const char **why)
{
	if (avail >= 1 && in[0] != TLS_CT_HANDSHAKE) {
		if (!first) {
			*why = "a non-handshake record inside the ClientHello";
			return SNI_MALFORMED;
		}
		*why = (in[0] & 0x80) ? "SSLv2-style ClientHello (not supported)"
				      : "not a TLS handshake record";
		return SNI_NOT_TLS;
	}
	if (avail >= 2 && in[1] != TLS_PROTOCOL_MAJOR) {
		*why = "record version is not 3.x";
		return first ? SNI_NOT_TLS : SNI_MALFORMED;
	}
	if (avail >= TLS_RECORD_HEADER) {
		size_t rl = get16(in + 3);

		if (rl == 0 || rl > TLS_MAX_PLAINTEXT) {
			*why = rl ? "record longer than 2^14 bytes" : "empty handshake record";
			return SNI_MALFORMED;
		}
	}
	return SNI_NEED_MORE;
}

enum sni_result sni_parse(const uint8_t *in, size_t len, struct sni_hello *out, const char **why)
{
	uint8_t msg[SNI_MAX_HELLO]; /* on the stack: workers parse in parallel */
	uint8_t hs[TLS_HS_HEADER];
	size_t off = 0, have = 0, need = 0, frag_end = 0;
	const char *reason = NULL;
	enum sni_result r;

	memset(out, 0, sizeof(*out));
	if (!why)
		why = &reason;
	/* Pass 1: record headers, the 4-byte handshake header, and where the hello ends. */
	for (bool first = true;; first = false) {
		size_t rl, take_n;

		r = check_header(in + off, len - off, first, why);
		if (r != SNI_NEED_MORE)
			return r;
		if (len - off < TLS_RECORD_HEADER)
			break;
		rl = get16(in + off + 3);
		if (off + TLS_RECORD_HEADER + rl > SNI_MAX_WIRE) {
			*why = "ClientHello records exceed the size limit";
			return SNI_TOO_BIG;
		}
		take_n = rl;
		if (len - off - TLS_RECORD_HEADER < rl)
			take_n = len - off - TLS_RECORD_HEADER; /* the record is still arriving */
		for (size_t i = 0; i < take_n && have + i < TLS_HS_HEADER; i++)
			hs[have + i] = in[off + TLS_RECORD_HEADER + i];
		if (have < TLS_HS_HEADER && have + take_n >= TLS_HS_HEADER) {
			if (hs[0] != TLS_HS_CLIENT_HELLO) {
				*why = "first handshake message is not a ClientHello";
				return SNI_MALFORMED;
			}
			need = TLS_HS_HEADER + ((size_t)hs[1] << 16 | (size_t)hs[2] << 8 | hs[3]);
			if (need > SNI_MAX_HELLO) {
				*why = "ClientHello larger than the size limit";
				return SNI_TOO_BIG;
			}
		} else if (have == 0 && take_n >= 1 &&
			   in[off + TLS_RECORD_HEADER] != TLS_HS_CLIENT_HELLO) {
			*why = "first handshake message is not a ClientHello";
			return SNI_MALFORMED;
		}
		have += take_n;
		if (take_n < rl)
			break;
		off += TLS_RECORD_HEADER + rl;
		if (need && have >= need) {
			frag_end = off;
			break;
		}
	}
	if (!frag_end)
		return SNI_NEED_MORE;

	/* Pass 2: the message in one piece (records were validated above). */
	have = 0;
	for (size_t o = 0; o < frag_end && have < need;) {
		size_t rl = get16(in + o + 3), k = rl < need - have ? rl : need - have;

		memcpy(msg + have, in + o + TLS_RECORD_HEADER, k);
		have += k;
		o += TLS_RECORD_HEADER + rl;
	}
	r = parse_hello(msg + TLS_HS_HEADER, need - TLS_HS_HEADER, out, why);
	if (r == SNI_DONE)
		out->wire_len = frag_end;
	else
		memset(out, 0, sizeof(*out));
	return r;
}

const char *sni_result_name(enum sni_result r)
{
	static const char *const names[] = { "need-more", "done", "not-tls", "malformed",
					     "too-big" };

	return (unsigned)r < sizeof(names) / sizeof(names[0]) ? names[r] : "?";
}
