#include <arpa/inet.h>
/* hostname.c — see hostname.h. Why the wildcard rules are what they are is written down at the
 * top of certstore_select.c. */
#include <string.h>
#include <strings.h>

#include "hostname.h"

int hostname_norm(const char *host, size_t len, char *out, size_t outlen)
{
	if (len > 0 && host[len - 1] == '.')
		len--;
	if (len == 0 || len >= outlen)
		return -1;
	for (size_t i = 0; i < len; i++) {
		char ch = host[i];

		out[i] = (ch >= 'A' && ch <= 'Z') ? (char)(ch - 'A' + 'a') : ch;
	}
	out[len] = '\0';
	return (int)len;
}

static size_t trimmed_len(const char *s)
{
	size_t n = strlen(s);

	return (n > 0 && s[n - 1] == '.') ? n - 1 : n;
}

int hostname_match(const char *name, const char *host)
{
	size_t nl = trimmed_len(name), hl = trimmed_len(host), sl, label;
	const char *suffix;

	if (nl == 0 || hl == 0 || memchr(host, '*', hl))
		return 0;
	if (name[0] != '*') {
		if (memchr(name, '*', nl) || nl != hl || strncasecmp(name, host, nl) != 0)
			return 0;
		return HOSTNAME_MATCH_EXACT;
	}
	/* "*.a.b": suffix ".a.b" with at least two labels and no other '*'. */
	if (nl < 5 || name[1] != '.')
		return 0;
	suffix = name + 1;
	sl = nl - 1;
	if (memchr(suffix, '*', sl) || !memchr(suffix + 1, '.', sl - 1))
		return 0;
	if (hl <= sl)
		return 0;
	label = hl - sl;
	if (memchr(host, '.', label) || strncasecmp(host + label, suffix, sl) != 0)
		return 0;
	return (int)(sl - 1); /* the matched suffix, without its leading dot */
}

const char *hostname_check_pattern(const char *sni)
{
	const char *p = sni;
	size_t len = strlen(sni), label = 0, labels = 1;

	if (len > 0 && sni[len - 1] == '.')
		len--;
	if (len == 0 || len > 253)
		return "must be a host name of 1 to 253 characters";
	if (p[0] == '*') {
		if (len < 2 || p[1] != '.')
			return "a wildcard must be a whole leftmost label (\"*.example.com\")";
		p += 2;
		len -= 2;
		labels = 0;
	}
	for (size_t i = 0; i < len; i++) {
		char ch = p[i];

		if (ch == '.') {
			if (label == 0)
				return "has an empty label";
			label = 0;
			labels++;
			continue;
		}
		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		      (ch >= '0' && ch <= '9') || ch == '-' || ch == '_'))
			return ch == '*' ? "\"*\" is only allowed as the whole leftmost label"
					 : "may hold only letters, digits, '-', '_' and '.'";
		if (++label > 63)
			return "has a label longer than 63 characters";
	}
	if (label == 0)
		return "has an empty label";
	if (sni[0] == '*' && labels < 1)
		return "a wildcard needs at least two labels after \"*.\"";
	return NULL;
}

static bool plain_byte(unsigned char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
	       ch == '-' || ch == '.' || ch == '_';
}

bool hostname_plain(const char *host, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (!plain_byte((unsigned char)host[i]))
			return false;
	return len > 0;
}

char *hostname_text(const char *host, size_t len, char *out, size_t outlen)
{
	static const char hex[] = "0123456789abcdef";
	size_t o = 0;

	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)host[i];

		if (plain_byte(ch)) {
			if (o + 1 >= outlen)
				break;
			out[o++] = (char)ch;
			continue;
		}
		if (o + 4 >= outlen)
			break;
		out[o++] = '\\';
		out[o++] = 'x';
		out[o++] = hex[ch >> 4];
		out[o++] = hex[ch & 15];
	}
	out[o] = '\0';
	return out;
}

bool hostname_is_ip(const char *s)
{
	unsigned char a[16];

	return inet_pton(AF_INET, s, a) == 1 || inet_pton(AF_INET6, s, a) == 1;
}
