/* config — JSON → struct config, driven by the field tables below.
 *
 * Parsing walks the document once against the tables (types, bounds, defaults, unknown keys), then
 * resolve() checks what spans objects: names that refer to other sections, duplicates, limits. All
 * problems are collected; nothing is returned half-valid. Running out of memory is one of them
 * ("FILE: PATH: out of memory"), never an abort: a reload that fails keeps the running config. */
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>

#include "config.h"
#include "hostname.h"

const char *const cfg_protocol_names[] = { "tls", "tcp", "tls-passthrough", NULL };
const char *const cfg_datapath_names[] = { "auto",	   "userspace", "ktls-splice",
					   "ktls-sockmap", "sockmap",	NULL };
static const char *const client_auth_names[] = { "none", "optional", "required", NULL };
static const char *const proxy_names[] = { "off", "v1", "v2", NULL };
static const char *const balance_names[] = { "round_robin", "first", NULL };
static const char *const keyperm_names[] = { "refuse", "warn", NULL };

enum ftype {
	F_STR,	   /* char * */
	F_PATH,	   /* char *, resolved against the config directory */
	F_U32,	   /* uint32_t within [min, max] */
	F_U64,	   /* uint64_t within [min, max] */
	F_BOOL,	   /* bool */
	F_ENUM,	   /* int, index into enums */
	F_ADDR,	   /* struct cfg_addr */
	F_STRLIST, /* char ** + size_t count right after it, at most max entries */
	F_OBJ,	   /* nested struct at off, described by sub */
	F_CUSTOM,  /* parse() does it */
};

struct parse;

struct field {
	const char *key;
	enum ftype type;
	size_t off;
	bool required;
	int64_t min, max, def;
	const char *sdef;
	const char *const *enums;
	const struct field *sub;
	int (*parse)(struct parse *p, json_t *v, void *base);
};

struct parse {
	const char *file; /* as given to config_load, for the messages */
	struct config *cfg;
	struct cfg_errors *errs;
	size_t nerr; /* problems found, counted even when their message could not be stored */
	bool oom;    /* an allocation failed (reported once) */
	char path[512];
	size_t plen;
};

#define END                                                                                        \
	{                                                                                          \
		NULL, 0, 0, false, 0, 0, 0, NULL, NULL, NULL, NULL                                 \
	}

int config_alloc_fail_after = -1;

/* Whether the allocation about to be made is the one config_alloc_fail_after makes fail. */
static bool alloc_fails(void)
{
	return config_alloc_fail_after >= 0 && config_alloc_fail_after-- == 0;
}

void config_errors_add(struct cfg_errors *errs, const char *fmt, ...)
{
	char *msg = NULL;
	char **grown;
	va_list ap;

	va_start(ap, fmt);
	if (alloc_fails() || vasprintf(&msg, fmt, ap) < 0)
		msg = NULL;
	va_end(ap);
	grown = msg && !alloc_fails() ? realloc(errs->msgs, (errs->n + 1) * sizeof(*grown)) : NULL;
	if (!grown) {
		free(msg);
		return;
	}
	errs->msgs = grown;
	errs->msgs[errs->n++] = msg;
}

void config_errors_free(struct cfg_errors *errs)
{
	for (size_t i = 0; i < errs->n; i++)
		free(errs->msgs[i]);
	free(errs->msgs);
	errs->msgs = NULL;
	errs->n = 0;
}

__attribute__((format(printf, 2, 3))) static void perr(struct parse *p, const char *fmt, ...)
{
	char reason[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(reason, sizeof(reason), fmt, ap);
	va_end(ap);
	p->nerr++;
	config_errors_add(p->errs, "%s: %s: %s", p->file, p->plen ? p->path : "(top level)",
			  reason);
}

static size_t push_key(struct parse *p, const char *key);
static void pop(struct parse *p, size_t old);

/* An error at field (which may carry an index, "certificates[1]") below the current path. */
__attribute__((format(printf, 3, 4))) static void ferr(struct parse *p, const char *field,
						       const char *fmt, ...)
{
	char reason[512];
	size_t old = push_key(p, field);
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(reason, sizeof(reason), fmt, ap);
	va_end(ap);
	perr(p, "%s", reason);
	pop(p, old);
}

/* Path stack: push returns the length to restore with pop. */
static size_t push_key(struct parse *p, const char *key)
{
	size_t old = p->plen;
	int n = snprintf(p->path + old, sizeof(p->path) - old, "%s%s", old ? "." : "", key);

	p->plen = MIN(sizeof(p->path) - 1, old + (size_t)MAX(n, 0));
	return old;
}

static size_t push_index(struct parse *p, size_t i)
{
	size_t old = p->plen;
	int n = snprintf(p->path + old, sizeof(p->path) - old, "[%zu]", i);

	p->plen = MIN(sizeof(p->path) - 1, old + (size_t)MAX(n, 0));
	return old;
}

static void pop(struct parse *p, size_t old)
{
	p->plen = old;
	p->path[old] = '\0';
}

static const char *type_name(const json_t *v)
{
	switch (json_typeof(v)) {
	case JSON_OBJECT:
		return "an object";
	case JSON_ARRAY:
		return "an array";
	case JSON_STRING:
		return "a string";
	case JSON_INTEGER:
		return "an integer";
	case JSON_REAL:
		return "a number";
	case JSON_TRUE:
	case JSON_FALSE:
		return "a boolean";
	default:
		return "null";
	}
}

/* An allocation failed: a problem of the file like any other, at the current path, reported
 * once. The parse goes on without the value (every caller copes with NULL), and config_load
 * refuses the file. */
static void oom(struct parse *p)
{
	if (p->oom)
		return;
	p->oom = true;
	perr(p, "out of memory");
}

/* The allocations of loading: NULL and oom() on failure. */
static char *xstrdup(struct parse *p, const char *s)
{
	char *d = alloc_fails() ? NULL : strdup(s);

	if (!d)
		oom(p);
	return d;
}

static char *xstrndup(struct parse *p, const char *s, size_t n)
{
	char *d = alloc_fails() ? NULL : strndup(s, n);

	if (!d)
		oom(p);
	return d;
}

static void *xcalloc(struct parse *p, size_t n, size_t size)
{
	void *m = alloc_fails() ? NULL : calloc(n ? n : 1, size);

	if (!m)
		oom(p);
	return m;
}

static char *resolve_path(struct parse *p, const char *rel)
{
	char *out;

	if (rel[0] == '/')
		return xstrdup(p, rel);
	if (alloc_fails() || asprintf(&out, "%s/%s", p->cfg->dir, rel) < 0) {
		oom(p);
		return NULL;
	}
	return out;
}

/* "host:port", "[v6]:port" or "*:port" → address; returns 0 or -EINVAL with a reason in why. */
static int config_parse_addr(const char *text, struct cfg_addr *out, const char **why)
{
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM };
	struct addrinfo *res = NULL;
	char host[256];
	const char *port, *colon;
	char *end;
	long pn;
	size_t hl;

	memset(out, 0, sizeof(*out));
	snprintf(out->text, sizeof(out->text), "%s", text);
	if (text[0] == '[') {
		const char *rb = strchr(text, ']');

		if (!rb || rb[1] != ':') {
			*why = "expected \"[IPv6]:port\"";
			return -EINVAL;
		}
		hl = (size_t)(rb - text - 1);
		if (hl >= sizeof(host))
			goto bad;
		memcpy(host, text + 1, hl);
		host[hl] = '\0';
		port = rb + 2;
		hints.ai_family = AF_INET6;
	} else {
		colon = strrchr(text, ':');
		if (!colon) {
			*why = "expected \"host:port\"";
			return -EINVAL;
		}
		hl = (size_t)(colon - text);
		if (hl >= sizeof(host))
			goto bad;
		memcpy(host, text, hl);
		host[hl] = '\0';
		port = colon + 1;
		if (strchr(host, ':')) {
			*why = "IPv6 addresses must be written \"[addr]:port\"";
			return -EINVAL;
		}
	}
	errno = 0;
	pn = strtol(port, &end, 10);
	if (!*port || *end || errno || pn < 0 || pn > 65535) {
		*why = "port must be a number from 0 to 65535";
		return -EINVAL;
	}
	if (strcmp(host, "*") == 0 || host[0] == '\0') {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&out->ss;

		s6->sin6_family = AF_INET6;
		s6->sin6_addr = in6addr_any;
		s6->sin6_port = htons((uint16_t)pn);
		out->len = sizeof(*s6);
		return 0;
	}
	if (getaddrinfo(host, port, &hints, &res) != 0 || !res) {
		*why = "cannot resolve host";
		return -EINVAL;
	}
	memcpy(&out->ss, res->ai_addr, res->ai_addrlen);
	out->len = res->ai_addrlen;
	freeaddrinfo(res);
	return 0;
bad:
	*why = "host too long";
	return -EINVAL;
}

static void parse_value(struct parse *p, const struct field *f, json_t *v, void *base);

/* Walks obj against table: unknown keys, missing required keys, defaults, then each value. */
static void parse_object(struct parse *p, json_t *obj, const struct field *table, void *base)
{
	const char *key;
	json_t *v;

	if (!json_is_object(obj)) {
		perr(p, "must be an object, not %s", type_name(obj));
		return;
	}
	json_object_foreach (obj, key, v) {
		const struct field *f = table;

		while (f->key && strcmp(f->key, key) != 0)
			f++;
		if (!f->key) {
			size_t old = push_key(p, key);

			perr(p, "unknown field");
			pop(p, old);
		}
	}
	for (const struct field *f = table; f->key; f++) {
		char *slot = (char *)base + f->off;
		size_t old = push_key(p, f->key);

		v = json_object_get(obj, f->key);
		if (v) {
			parse_value(p, f, v, base);
		} else if (f->required) {
			perr(p, "required field is missing");
		} else if (f->type == F_U32) {
			*(uint32_t *)slot = (uint32_t)f->def;
		} else if (f->type == F_U64) {
			*(uint64_t *)slot = (uint64_t)f->def;
		} else if (f->type == F_BOOL) {
			*(bool *)slot = f->def != 0;
		} else if (f->type == F_ENUM) {
			*(int *)slot = (int)f->def;
		} else if ((f->type == F_STR || f->type == F_PATH) && f->sdef) {
			*(char **)slot =
			    f->type == F_PATH ? resolve_path(p, f->sdef) : xstrdup(p, f->sdef);
		} else if (f->type == F_OBJ) {
			json_t *empty = alloc_fails() ? NULL : json_object();

			if (empty)
				parse_object(p, empty, f->sub, slot);
			else
				oom(p);
			json_decref(empty);
		}
		pop(p, old);
	}
}

static void parse_strlist(struct parse *p, const struct field *f, json_t *v, void *base)
{
	char ***list = (char ***)((char *)base + f->off);
	size_t *count = (size_t *)((char *)base + f->off + sizeof(char **));
	size_t i;
	json_t *e;

	if (!json_is_array(v)) {
		perr(p, "must be an array of strings, not %s", type_name(v));
		return;
	}
	if (f->max && json_array_size(v) > (size_t)f->max) {
		perr(p, "at most %lld entries allowed", (long long)f->max);
		return;
	}
	*list = xcalloc(p, json_array_size(v), sizeof(char *));
	if (!*list)
		return;
	json_array_foreach (v, i, e) {
		size_t old = push_index(p, i);

		if (!json_is_string(e) || json_string_length(e) == 0)
			perr(p, "must be a non-empty string");
		else
			(*list)[(*count)++] = xstrdup(p, json_string_value(e));
		pop(p, old);
	}
}

static void parse_value(struct parse *p, const struct field *f, json_t *v, void *base)
{
	char *slot = (char *)base + f->off;
	const char *why;

	switch (f->type) {
	case F_STR:
	case F_PATH:
		if (!json_is_string(v) || json_string_length(v) == 0) {
			perr(p, "must be a non-empty string");
			return;
		}
		*(char **)slot = f->type == F_PATH ? resolve_path(p, json_string_value(v))
						   : xstrdup(p, json_string_value(v));
		return;
	case F_U32:
	case F_U64:
		if (!json_is_integer(v) || json_integer_value(v) < f->min ||
		    json_integer_value(v) > f->max) {
			perr(p, "must be an integer from %lld to %lld", (long long)f->min,
			     (long long)f->max);
			return;
		}
		if (f->type == F_U64)
			*(uint64_t *)slot = (uint64_t)json_integer_value(v);
		else
			*(uint32_t *)slot = (uint32_t)json_integer_value(v);
		return;
	case F_BOOL:
		if (!json_is_boolean(v)) {
			perr(p, "must be true or false, not %s", type_name(v));
			return;
		}
		*(bool *)slot = json_is_true(v);
		return;
	case F_ENUM:
		if (json_is_string(v)) {
			for (int i = 0; f->enums[i]; i++) {
				if (strcmp(f->enums[i], json_string_value(v)) == 0) {
					*(int *)slot = i;
					return;
				}
			}
		}
		{
			char allowed[256] = "";

			for (int i = 0; f->enums[i]; i++)
				snprintf(allowed + strlen(allowed),
					 sizeof(allowed) - strlen(allowed), "%s\"%s\"",
					 i ? ", " : "", f->enums[i]);
			perr(p, "must be one of %s", allowed);
		}
		return;
	case F_ADDR:
		if (!json_is_string(v)) {
			perr(p, "must be a \"host:port\" string, not %s", type_name(v));
			return;
		}
		if (config_parse_addr(json_string_value(v), (struct cfg_addr *)slot, &why) < 0)
			perr(p, "\"%s\": %s", json_string_value(v), why);
		return;
	case F_STRLIST:
		parse_strlist(p, f, v, base);
		return;
	case F_OBJ:
		parse_object(p, v, f->sub, slot);
		return;
	case F_CUSTOM:
		f->parse(p, v, base);
		return;
	}
}

/* Parses a JSON object whose values are objects described by table into a freshly allocated array
 * of elements of size esz; each element's first member is its char *name. */
static void parse_named(struct parse *p, json_t *v, const struct field *table, void **arr,
			size_t *n, size_t esz)
{
	const char *key;
	json_t *e;

	if (!json_is_object(v)) {
		perr(p, "must be an object of named entries, not %s", type_name(v));
		return;
	}
	*arr = xcalloc(p, json_object_size(v), esz);
	if (!*arr)
		return;
	json_object_foreach (v, key, e) {
		char *elem = (char *)*arr + *n * esz;
		size_t old = push_key(p, key);

		*(char **)elem = xstrdup(p, key);
		parse_object(p, e, table, elem);
		(*n)++;
		pop(p, old);
	}
}

/* ---- tables ---- */

static const struct field cert_fields[] = {
	{ "cert", F_PATH, offsetof(struct cfg_cert, cert), true, 0, 0, 0, NULL, NULL, NULL, NULL },
	{ "key", F_PATH, offsetof(struct cfg_cert, key), true, 0, 0, 0, NULL, NULL, NULL, NULL },
	{ "domains", F_STRLIST, offsetof(struct cfg_cert, domains), false, 0, 100, 0, NULL, NULL,
	  NULL, NULL },
	END,
};

static const struct field ca_fields[] = {
	{ "file", F_PATH, offsetof(struct cfg_ca, file), true, 0, 0, 0, NULL, NULL, NULL, NULL },
	{ "crl", F_PATH, offsetof(struct cfg_ca, crl), false, 0, 0, 0, NULL, NULL, NULL, NULL },
	END,
};

static int parse_servers(struct parse *p, json_t *v, void *base)
{
	struct cfg_backend *b = base;
	const char *why;
	size_t i;
	json_t *e;

	if (!json_is_array(v) || json_array_size(v) == 0) {
		perr(p, "must be a non-empty array of \"host:port\" strings");
		return -EINVAL;
	}
	b->servers = xcalloc(p, json_array_size(v), sizeof(*b->servers));
	if (!b->servers)
		return -ENOMEM;
	json_array_foreach (v, i, e) {
		size_t old = push_index(p, i);

		if (!json_is_string(e))
			perr(p, "must be a \"host:port\" string, not %s", type_name(e));
		else if (config_parse_addr(json_string_value(e), &b->servers[b->n_servers], &why))
			perr(p, "\"%s\": %s", json_string_value(e), why);
		else
			b->n_servers++;
		pop(p, old);
	}
	return 0;
}

static const struct field backend_fields[] = {
	{ "servers", F_CUSTOM, 0, true, 0, 0, 0, NULL, NULL, NULL, parse_servers },
	{ "balance", F_ENUM, offsetof(struct cfg_backend, balance), false, 0, 0,
	  CFG_BALANCE_ROUND_ROBIN, NULL, balance_names, NULL, NULL },
	END,
};

#define POLICY_LIST(key, member)                                                                   \
	{                                                                                          \
		key, F_STRLIST, offsetof(struct cfg_policy, member), false, 0, 512, 0, NULL, NULL, \
		    NULL, NULL                                                                     \
	}
static const struct field policy_fields[] = {
	POLICY_LIST("versions", versions),
	POLICY_LIST("ciphers", ciphers),
	POLICY_LIST("ciphersuites", ciphersuites),
	POLICY_LIST("groups", groups),
	END,
};

static const struct field client_auth_fields[] = {
	{ "mode", F_ENUM, 0, false, 0, 0, CFG_CAUTH_NONE, NULL, client_auth_names, NULL, NULL },
	{ "ca", F_STR, offsetof(__typeof__(((struct cfg_listener *)0)->client_auth), ca_name),
	  false, 0, 0, 0, NULL, NULL, NULL, NULL },
	{ "depth", F_U32, offsetof(__typeof__(((struct cfg_listener *)0)->client_auth), depth),
	  false, 1, 100, 9, NULL, NULL, NULL, NULL },
	END,
};

#define BT_OFF(m) offsetof(__typeof__(((struct cfg_listener *)0)->backend_tls), m)
static const struct field backend_tls_fields[] = {
	{ "enabled", F_BOOL, BT_OFF(enabled), false, 0, 0, 0, NULL, NULL, NULL, NULL },
	{ "verify", F_BOOL, BT_OFF(verify), false, 0, 0, 1, NULL, NULL, NULL, NULL },
	{ "ca_file", F_PATH, BT_OFF(ca_file), false, 0, 0, 0, NULL, NULL, NULL, NULL },
	{ "sni", F_STR, BT_OFF(sni), false, 0, 0, 0, NULL, NULL, NULL, NULL },
	{ "security_policy", F_STR, BT_OFF(security_policy), false, 0, 0, 0,
	  "ELBSecurityPolicy-2016-08", NULL, NULL, NULL },
	END,
};

#define ST_OFF(m) offsetof(__typeof__(((struct cfg_listener *)0)->session_tickets), m)
static const struct field session_tickets_fields[] = {
	{ "key_file", F_PATH, ST_OFF(key_file), false, 0, 0, 0, NULL, NULL, NULL, NULL },
	{ "rotate_s", F_U32, ST_OFF(rotate_s), false, 1, 604800, 3600, NULL, NULL, NULL, NULL },
	{ "lifetime_s", F_U32, ST_OFF(lifetime_s), false, 1, 604800, 7200, NULL, NULL, NULL, NULL },
	END,
};

#define TO_OFF(m) offsetof(__typeof__(((struct cfg_listener *)0)->timeouts), m)
static const struct field timeout_fields[] = {
	{ "client_hello_ms", F_U32, TO_OFF(client_hello_ms), false, 1, 3600000, 5000, NULL, NULL,
	  NULL, NULL },
	{ "handshake_ms", F_U32, TO_OFF(handshake_ms), false, 1, 3600000, 10000, NULL, NULL, NULL,
	  NULL },
	{ "close_ms", F_U32, TO_OFF(close_ms), false, 1, 600000, 5000, NULL, NULL, NULL, NULL },
	{ "idle_ms", F_U32, TO_OFF(idle_ms), false, 1, 86400000, 300000, NULL, NULL, NULL, NULL },
	{ "connect_ms", F_U32, TO_OFF(connect_ms), false, 1, 600000, 3000, NULL, NULL, NULL, NULL },
	END,
};

static int parse_routes(struct parse *p, json_t *v, void *base)
{
	static const struct field route_fields[] = {
		{ "sni", F_STR, offsetof(struct cfg_route, sni), true, 0, 0, 0, NULL, NULL, NULL,
		  NULL },
		{ "backend", F_STR, offsetof(struct cfg_route, backend_name), true, 0, 0, 0, NULL,
		  NULL, NULL, NULL },
		END,
	};
	struct cfg_listener *l = base;
	size_t i;
	json_t *e;

	if (!json_is_array(v)) {
		perr(p, "must be an array of {\"sni\", \"backend\"} objects");
		return -EINVAL;
	}
	l->routes = xcalloc(p, json_array_size(v), sizeof(*l->routes));
	if (!l->routes)
		return -ENOMEM;
	json_array_foreach (v, i, e) {
		size_t old = push_index(p, i);

		parse_object(p, e, route_fields, &l->routes[l->n_routes++]);
		pop(p, old);
	}
	return 0;
}

#define L(m) offsetof(struct cfg_listener, m)
static const struct field listener_fields[] = {
	{ "name", F_STR, L(name), false, 0, 0, 0, NULL, NULL, NULL, NULL },
	{ "bind", F_ADDR, L(bind), true, 0, 0, 0, NULL, NULL, NULL, NULL },
	{ "protocol", F_ENUM, L(protocol), false, 0, 0, CFG_PROTO_TLS, NULL, cfg_protocol_names,
	  NULL, NULL },
	{ "security_policy", F_STR, L(security_policy), false, 0, 0, 0,
	  "ELBSecurityPolicy-TLS13-1-2-2021-06", NULL, NULL, NULL },
	{ "certificates", F_STRLIST, L(cert_names), false, 0, 1000, 0, NULL, NULL, NULL, NULL },
	{ "client_auth", F_OBJ, L(client_auth), false, 0, 0, 0, NULL, NULL, client_auth_fields,
	  NULL },
	{ "alpn", F_STRLIST, L(alpn), false, 0, 32, 0, NULL, NULL, NULL, NULL },
	{ "backend", F_STR, L(backend_name), false, 0, 0, 0, NULL, NULL, NULL, NULL },
	{ "backend_tls", F_OBJ, L(backend_tls), false, 0, 0, 0, NULL, NULL, backend_tls_fields,
	  NULL },
	{ "proxy_protocol", F_ENUM, L(proxy_protocol), false, 0, 0, CFG_PROXY_OFF, NULL,
	  proxy_names, NULL, NULL },
	{ "datapath", F_ENUM, L(datapath), false, 0, 0, CFG_DP_AUTO, NULL, cfg_datapath_names, NULL,
	  NULL },
	{ "session_resumption", F_BOOL, L(session_resumption), false, 0, 0, 0, NULL, NULL, NULL,
	  NULL },
	{ "session_tickets", F_OBJ, L(session_tickets), false, 0, 0, 0, NULL, NULL,
	  session_tickets_fields, NULL },
	{ "timeouts", F_OBJ, L(timeouts), false, 0, 0, 0, NULL, NULL, timeout_fields, NULL },
	{ "max_connections", F_U32, L(max_connections), false, 1, 10000000, 100000, NULL, NULL,
	  NULL, NULL },
	{ "max_certificates", F_U32, L(max_certificates), false, 1, 1000, 15, NULL, NULL, NULL,
	  NULL },
	{ "routes", F_CUSTOM, 0, false, 0, 0, 0, NULL, NULL, NULL, parse_routes },
	END,
};

static int parse_listeners(struct parse *p, json_t *v, void *base)
{
	struct config *cfg = base;
	size_t i;
	json_t *e;

	if (!json_is_array(v) || json_array_size(v) == 0) {
		perr(p, "must be a non-empty array of listener objects");
		return -EINVAL;
	}
	cfg->listeners = xcalloc(p, json_array_size(v), sizeof(*cfg->listeners));
	if (!cfg->listeners)
		return -ENOMEM;
	json_array_foreach (v, i, e) {
		struct cfg_listener *l = &cfg->listeners[cfg->n_listeners++];
		size_t old = push_index(p, i);

		l->client_auth.ca = -1;
		parse_object(p, e, listener_fields, l);
		if (!l->name)
			l->name = xstrdup(p, l->bind.text[0] ? l->bind.text : "listener");
		pop(p, old);
	}
	return 0;
}

#define NAMED_PARSER(fn, table, member, count)                                                     \
	static int fn(struct parse *p, json_t *v, void *base)                                      \
	{                                                                                          \
		struct config *cfg = base;                                                         \
		parse_named(p, v, table, (void **)&cfg->member, &cfg->count,                       \
			    sizeof(*cfg->member));                                                 \
		return 0;                                                                          \
	}
NAMED_PARSER(parse_certs, cert_fields, certs, n_certs)
NAMED_PARSER(parse_cas, ca_fields, cas, n_cas)
NAMED_PARSER(parse_backends, backend_fields, backends, n_backends)
NAMED_PARSER(parse_policies, policy_fields, policies, n_policies)

static const struct field control_fields[] = {
	{ "socket", F_PATH,
	  offsetof(struct config, control.socket) - offsetof(struct config, control), false, 0, 0,
	  0, "/run/ktlsd/ctl.sock", NULL, NULL, NULL },
	END,
};

static int parse_metrics(struct parse *p, json_t *v, void *base)
{
	static const struct field metrics_fields[] = {
		{ "bind", F_ADDR,
		  offsetof(struct config, metrics.bind) - offsetof(struct config, metrics), true, 0,
		  0, 0, NULL, NULL, NULL, NULL },
		END,
	};
	struct config *cfg = base;

	cfg->metrics.enabled = true;
	parse_object(p, v, metrics_fields, &cfg->metrics);
	return 0;
}

static const struct field bpf_fields[] = {
	{ "pin_path", F_STR, 0, false, 0, 0, 0, "/sys/fs/bpf/ktlsd", NULL, NULL, NULL },
	END,
};

#define LIM(m) (offsetof(struct config, limits.m) - offsetof(struct config, limits))
#define SRC(m)                                                                                     \
	(offsetof(struct config, limits.per_source.m) - offsetof(struct config, limits.per_source))
static const struct field per_source_fields[] = {
	{ "rate", F_U32, SRC(rate), false, 0, 1000000, 0, NULL, NULL, NULL, NULL },
	{ "burst", F_U32, SRC(burst), false, 1, 1000000, 100, NULL, NULL, NULL, NULL },
	{ "max_handshakes", F_U32, SRC(max_handshakes), false, 0, 10000000, 32, NULL, NULL, NULL,
	  NULL },
	{ "max_connections", F_U32, SRC(max_connections), false, 0, 100000000, 10000, NULL, NULL,
	  NULL, NULL },
	{ "table_size", F_U32, SRC(table_size), false, 64, 16777216, 65536, NULL, NULL, NULL,
	  NULL },
	END,
};

static const struct field limits_fields[] = {
	{ "max_connections", F_U32, LIM(max_connections), false, 1, 100000000, 1000000, NULL, NULL,
	  NULL, NULL },
	{ "max_handshakes", F_U32, LIM(max_handshakes), false, 1, 10000000, 10000, NULL, NULL, NULL,
	  NULL },
	{ "per_source", F_OBJ, LIM(per_source), false, 0, 0, 0, NULL, NULL, per_source_fields,
	  NULL },
	/* 1 MiB to 1 TiB, 512 MiB by default: the sockmap backlog guard (dp_sockmap.c). */
	{ "sockmap_backlog", F_U64, LIM(sockmap_backlog), false, 1 << 20, 1ll << 40, 512 << 20,
	  NULL, NULL, NULL, NULL },
	END,
};

#define C(m) offsetof(struct config, m)
static const struct field top_fields[] = {
	{ "listeners", F_CUSTOM, 0, true, 0, 0, 0, NULL, NULL, NULL, parse_listeners },
	{ "certificates", F_CUSTOM, 0, false, 0, 0, 0, NULL, NULL, NULL, parse_certs },
	{ "ca_certificates", F_CUSTOM, 0, false, 0, 0, 0, NULL, NULL, NULL, parse_cas },
	{ "backends", F_CUSTOM, 0, false, 0, 0, 0, NULL, NULL, NULL, parse_backends },
	{ "security_policies", F_CUSTOM, 0, false, 0, 0, 0, NULL, NULL, NULL, parse_policies },
	{ "workers", F_U32, C(workers), false, 0, 1024, 0, NULL, NULL, NULL, NULL },
	{ "drain_timeout_ms", F_U32, C(drain_timeout_ms), false, 0, 3600000, 30000, NULL, NULL,
	  NULL, NULL },
	{ "control", F_OBJ, C(control), false, 0, 0, 0, NULL, NULL, control_fields, NULL },
	{ "metrics", F_CUSTOM, 0, false, 0, 0, 0, NULL, NULL, NULL, parse_metrics },
	{ "bpf", F_OBJ, C(bpf), false, 0, 0, 0, NULL, NULL, bpf_fields, NULL },
	{ "limits", F_OBJ, C(limits), false, 0, 0, 0, NULL, NULL, limits_fields, NULL },
	{ "user", F_STR, C(user), false, 0, 0, 0, NULL, NULL, NULL, NULL },
	{ "group", F_STR, C(group), false, 0, 0, 0, NULL, NULL, NULL, NULL },
	{ "key_file_permissions", F_ENUM, C(key_file_permissions), false, 0, 0, CFG_KEYPERM_REFUSE,
	  NULL, keyperm_names, NULL, NULL },
	END,
};

/* ---- cross-references ---- */

static ssize_t find_named(const void *arr, size_t n, size_t esz, const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(*(char *const *)((const char *)arr + i * esz), name) == 0)
			return (ssize_t)i;
	return -1;
}

/* Whether two listen addresses would take the same connections: the same family and port, and
 * the same address or either one the wildcard. ktlsd binds with SO_REUSEPORT (one socket per
 * worker), so the kernel would accept both and split connections between them at random. */
static bool binds_overlap(const struct cfg_addr *a, const struct cfg_addr *b)
{
	if (a->ss.ss_family != b->ss.ss_family)
		return false;
	if (a->ss.ss_family == AF_INET) {
		const struct sockaddr_in *x = (const void *)&a->ss, *y = (const void *)&b->ss;

		return x->sin_port == y->sin_port && (x->sin_addr.s_addr == y->sin_addr.s_addr ||
						      x->sin_addr.s_addr == htonl(INADDR_ANY) ||
						      y->sin_addr.s_addr == htonl(INADDR_ANY));
	}
	if (a->ss.ss_family == AF_INET6) {
		const struct sockaddr_in6 *x = (const void *)&a->ss, *y = (const void *)&b->ss;

		return x->sin6_port == y->sin6_port &&
		       (IN6_ARE_ADDR_EQUAL(&x->sin6_addr, &y->sin6_addr) ||
			IN6_IS_ADDR_UNSPECIFIED(&x->sin6_addr) ||
			IN6_IS_ADDR_UNSPECIFIED(&y->sin6_addr));
	}
	return false;
}

static void resolve_listener(struct parse *p, struct cfg_listener *l, size_t li)
{
	struct config *cfg = p->cfg;
	ssize_t idx;

	snprintf(p->path, sizeof(p->path), "listeners[%zu]", li);
	p->plen = strlen(p->path);
	for (size_t j = 0; j < li; j++)
		if (strcmp(cfg->listeners[j].name, l->name) == 0)
			perr(p, "name \"%s\" is already used by listeners[%zu]", l->name, j);
	for (size_t j = 0; j < li; j++)
		if (l->bind.len && binds_overlap(&cfg->listeners[j].bind, &l->bind))
			ferr(p, "bind",
			     "%s takes the connections of listeners[%zu] (%s): each listener "
			     "needs its own port, or addresses that do not overlap",
			     l->bind.text, j, cfg->listeners[j].bind.text);

	if (l->protocol == CFG_PROTO_TLS && l->n_certs == 0)
		perr(p, "a \"tls\" listener needs at least one entry in \"certificates\"");
	if (l->protocol != CFG_PROTO_TLS && l->n_certs)
		ferr(p, "certificates", "applies only to \"tls\" listeners");
	if (l->n_certs > l->max_certificates)
		ferr(p, "certificates", "%zu certificates exceed max_certificates (%u)", l->n_certs,
		     l->max_certificates);
	l->certs = xcalloc(p, l->n_certs, sizeof(size_t));
	for (size_t j = 0; l->certs && j < l->n_certs; j++) {
		idx = find_named(cfg->certs, cfg->n_certs, sizeof(*cfg->certs), l->cert_names[j]);
		if (idx < 0) {
			char f[48];

			snprintf(f, sizeof(f), "certificates[%zu]", j);
			ferr(p, f, "no certificate named \"%s\" in \"certificates\"",
			     l->cert_names[j]);
		}
		l->certs[j] = idx < 0 ? 0 : (size_t)idx;
	}
	if (l->client_auth.mode != CFG_CAUTH_NONE) {
		if (l->protocol != CFG_PROTO_TLS)
			ferr(p, "client_auth", "applies only to \"tls\" listeners");
		if (!l->client_auth.ca_name)
			ferr(p, "client_auth.ca", "required when mode is not \"none\"");
		else if ((idx = find_named(cfg->cas, cfg->n_cas, sizeof(*cfg->cas),
					   l->client_auth.ca_name)) < 0)
			ferr(p, "client_auth.ca", "no CA named \"%s\" in \"ca_certificates\"",
			     l->client_auth.ca_name);
		else
			l->client_auth.ca = idx;
	}
	if (!l->backend_name && l->n_routes == 0) {
		ferr(p, "backend", "required (the backend traffic is forwarded to)");
	} else if (l->backend_name) {
		idx = find_named(cfg->backends, cfg->n_backends, sizeof(*cfg->backends),
				 l->backend_name);
		if (idx < 0)
			ferr(p, "backend", "no backend named \"%s\" in \"backends\"",
			     l->backend_name);
		l->backend = idx < 0 ? 0 : (size_t)idx;
	}
	if (l->n_routes && l->protocol != CFG_PROTO_PASSTHROUGH)
		ferr(p, "routes", "only \"tls-passthrough\" listeners route by SNI");
	for (size_t j = 0; j < l->n_routes; j++) {
		const char *bad = hostname_check_pattern(l->routes[j].sni);
		char f[48];

		snprintf(f, sizeof(f), "routes[%zu].sni", j);
		if (bad)
			ferr(p, f, "\"%s\" %s", l->routes[j].sni, bad);
		for (size_t k = 0; k < j; k++)
			if (hostname_match(l->routes[k].sni, l->routes[j].sni) ==
				HOSTNAME_MATCH_EXACT ||
			    !strcasecmp(l->routes[k].sni, l->routes[j].sni))
				ferr(p, f, "\"%s\" is already routed by routes[%zu]",
				     l->routes[j].sni, k);
		idx = find_named(cfg->backends, cfg->n_backends, sizeof(*cfg->backends),
				 l->routes[j].backend_name);
		snprintf(f, sizeof(f), "routes[%zu].backend", j);
		if (idx < 0)
			ferr(p, f, "no backend named \"%s\" in \"backends\"",
			     l->routes[j].backend_name);
		l->routes[j].backend = idx < 0 ? 0 : (size_t)idx;
	}
	if (l->protocol != CFG_PROTO_TLS && l->datapath != CFG_DP_AUTO &&
	    l->datapath != CFG_DP_SOCKMAP && l->datapath != CFG_DP_USERSPACE)
		ferr(p, "datapath", "\"%s\" needs a \"tls\" listener",
		     cfg_datapath_names[l->datapath]);
	if (l->protocol == CFG_PROTO_TLS && l->datapath == CFG_DP_SOCKMAP)
		ferr(p, "datapath",
		     "\"sockmap\" forwards plaintext; \"tls\" listeners use "
		     "\"ktls-sockmap\", \"ktls-splice\" or \"userspace\"");
	if (l->session_tickets.key_file && !l->session_resumption)
		ferr(p, "session_tickets.key_file", "needs \"session_resumption\": true");
	if (l->backend_tls.enabled && l->protocol != CFG_PROTO_TLS)
		ferr(p, "backend_tls.enabled", "applies only to \"tls\" listeners");
	if (l->backend_tls.enabled && l->backend_tls.verify && !l->backend_tls.ca_file)
		ferr(p, "backend_tls.ca_file", "required when verify is true");
	p->plen = 0;
	p->path[0] = '\0';
}

static void resolve(struct parse *p)
{
	struct config *cfg = p->cfg;

	if (cfg->group && !cfg->user) {
		snprintf(p->path, sizeof(p->path), "group");
		p->plen = strlen(p->path);
		perr(p, "needs \"user\" (ktlsd changes its group only when it drops to a user)");
		p->plen = 0;
		p->path[0] = '\0';
	}

	for (size_t i = 0; i < cfg->n_listeners; i++)
		resolve_listener(p, &cfg->listeners[i], i);
}

/* ---- lifetime ---- */

static void free_strlist(char **l, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(l[i]);
	free(l);
}

static void config_free(struct config *c)
{
	for (size_t i = 0; i < c->n_listeners; i++) {
		struct cfg_listener *l = &c->listeners[i];

		free(l->name);
		free(l->security_policy);
		free_strlist(l->cert_names, l->n_certs);
		free(l->certs);
		free(l->client_auth.ca_name);
		free_strlist(l->alpn, l->n_alpn);
		free(l->backend_name);
		free(l->backend_tls.ca_file);
		free(l->session_tickets.key_file);
		free(l->backend_tls.sni);
		free(l->backend_tls.security_policy);
		for (size_t j = 0; j < l->n_routes; j++) {
			free(l->routes[j].sni);
			free(l->routes[j].backend_name);
		}
		free(l->routes);
	}
	free(c->listeners);
	for (size_t i = 0; i < c->n_certs; i++) {
		free(c->certs[i].name);
		free(c->certs[i].cert);
		free(c->certs[i].key);
		free_strlist(c->certs[i].domains, c->certs[i].n_domains);
	}
	free(c->certs);
	for (size_t i = 0; i < c->n_cas; i++) {
		free(c->cas[i].name);
		free(c->cas[i].file);
		free(c->cas[i].crl);
	}
	free(c->cas);
	for (size_t i = 0; i < c->n_backends; i++) {
		free(c->backends[i].name);
		free(c->backends[i].servers);
	}
	free(c->backends);
	for (size_t i = 0; i < c->n_policies; i++) {
		struct cfg_policy *pol = &c->policies[i];

		free(pol->name);
		free_strlist(pol->versions, pol->n_versions);
		free_strlist(pol->ciphers, pol->n_ciphers);
		free_strlist(pol->ciphersuites, pol->n_ciphersuites);
		free_strlist(pol->groups, pol->n_groups);
	}
	free(c->policies);
	free(c->control.socket);
	free(c->bpf.pin_path);
	free(c->user);
	free(c->group);
	free(c->path);
	free(c->dir);
	free(c);
}

struct config *config_get(struct config *c)
{
	atomic_fetch_add(&c->refs, 1);
	return c;
}

void config_put(struct config *c)
{
	if (c && atomic_fetch_sub(&c->refs, 1) == 1)
		config_free(c);
}

int config_load(const char *path, struct config **out, struct cfg_errors *errs)
{
	struct parse p = { .file = path, .errs = errs };
	struct config *cfg = xcalloc(&p, 1, sizeof(*cfg));
	json_error_t jerr;
	json_t *root = NULL;
	const char *slash;
	int ret = 0;

	ENSURE(cfg, ENOMEM);
	p.cfg = cfg;
	atomic_init(&cfg->refs, 1);
	cfg->path = xstrdup(&p, path);
	slash = strrchr(path, '/');
	cfg->dir = slash ? xstrndup(&p, path, (size_t)(slash - path == 0 ? 1 : slash - path))
			 : xstrdup(&p, ".");
	ENSURE(!p.oom, ENOMEM);
	root = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
	if (!root) {
		if (jerr.line > 0)
			config_errors_add(errs, "%s:%d:%d: %s", path, jerr.line, jerr.column,
					  jerr.text);
		else
			config_errors_add(errs, "%s: %s", path, jerr.text);
		ENSURE(false, EINVAL);
	}
	parse_object(&p, root, top_fields, cfg);
	if (p.nerr == 0)
		resolve(&p);
	ENSURE(!p.oom, ENOMEM);
	ENSURE(p.nerr == 0, EINVAL);
	*out = cfg;
	cfg = NULL;
cleanup:
	json_decref(root);
	if (cfg)
		config_free(cfg);
	return ret;
}

const struct cfg_listener *config_listener_by_name(const struct config *c, const char *name)
{
	ssize_t i = find_named(c->listeners, c->n_listeners, sizeof(*c->listeners), name);

	return i < 0 ? NULL : &c->listeners[i];
}
