/* ctl_cmd — the control protocol's requests: parsing and checking them, and the commands that
 * act (reload, cert-set, cert-del, drain) or ask the workers (connections). Every problem with a
 * request is an {"error": ...} reply; nothing a client sends can reach further than that. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "ctl.h"
#include "reload.h"
#include "stats.h"
#include "version.h"
#include "worker.h"

#define CONNS_DEFAULT 100
#define CONNS_MAX 10000
#define CONNS_TIMEOUT_MS 5000

json_t *ctl_error(const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return json_pack("{s:s}", "error", msg);
}

/* {"ok": true, ...reply} (ok first, for people reading replies). */
static json_t *ok(json_t *reply)
{
	json_t *r = json_pack("{s:b}", "ok", 1);

	if (!reply || !r || json_object_update(r, reply) < 0) {
		json_decref(r);
		json_decref(reply);
		return ctl_error("out of memory");
	}
	json_decref(reply);
	return r;
}

static json_t *strings(const struct cfg_errors *l)
{
	json_t *a = json_array();

	for (size_t i = 0; i < l->n; i++)
		json_array_append_new(a, json_string(l->msgs[i]));
	return a;
}

/* The reply to a change: what it did, or why it was refused. */
static json_t *report(const char *what, int ret, const struct reload_report *rep)
{
	json_t *r;

	if (ret < 0) {
		r = ctl_error("%s refused: %s%s", what,
			      rep->problems.n ? rep->problems.msgs[0] : "unknown error",
			      rep->problems.n > 1 ? " (and more: see problems)" : "");
		json_object_set_new(r, "problems", strings(&rep->problems));
	} else {
		r = json_pack("{s:{s:o,s:o,s:o}}", "listeners", "kept", strings(&rep->kept),
			      "added", strings(&rep->added), "removed", strings(&rep->removed));
		r = ok(r);
	}
	json_object_set_new(r, "warnings", strings(&rep->warnings));
	return r;
}

static const char *str_arg(json_t *req, const char *key)
{
	return json_string_value(json_object_get(req, key));
}

static json_t *cmd_version(struct reload *rl, json_t *req)
{
	json_t *dp = json_object();

	for (int t = CFG_DP_USERSPACE; t <= CFG_DP_SOCKMAP; t++)
		json_object_set_new(dp, cfg_datapath_names[t],
				    rl->caps.tier[t] ? json_string("available")
						     : json_string(rl->caps.why[t]));
	return ok(json_pack("{s:s,s:s,s:s,s:i,s:s,s:i,s:o,s:I,s:o}", "version", KTLSD_VERSION,
			    "openssl", OpenSSL_version(OPENSSL_VERSION), "jansson", JANSSON_VERSION,
			    "pid", (int)getpid(), "config", rl->path, "workers", (int)rl->n_workers,
			    "started", ctl_json_time(rl->started), "uptime_s",
			    (json_int_t)(time(NULL) - rl->started), "datapath", dp));
}

static json_t *cmd_stats(struct reload *rl, json_t *req)
{
	return ctl_show_stats(rl);
}

static json_t *cmd_listeners(struct reload *rl, json_t *req)
{
	return ctl_show_listeners(rl);
}

static json_t *cmd_certs(struct reload *rl, json_t *req)
{
	return ctl_show_certs(rl, str_arg(req, "name"));
}

static json_t *cmd_reload(struct reload *rl, json_t *req)
{
	struct reload_report rep = { 0 };
	int ret = reload_run(rl, &rep);
	json_t *r = report("reload", ret, &rep);

	reload_report_free(&rep);
	return r;
}

static json_t *cmd_cert_set(struct reload *rl, json_t *req)
{
	struct reload_report rep = { 0 };
	const char *name = str_arg(req, "name");
	int ret = reload_cert_set(rl, name, str_arg(req, "cert"), str_arg(req, "key"), &rep);
	json_t *r = report("cert-set", ret, &rep);

	reload_report_free(&rep);
	if (ret == 0) {
		json_t *certs = ctl_show_certs(rl, name);

		json_object_set(r, "certificate",
				json_array_get(json_object_get(certs, "certificates"), 0));
		json_decref(certs);
	}
	return r;
}

static json_t *cmd_cert_del(struct reload *rl, json_t *req)
{
	struct reload_report rep = { 0 };
	int ret = reload_cert_del(rl, str_arg(req, "name"), &rep);
	json_t *r = report("cert-del", ret, &rep);

	reload_report_free(&rep);
	return r;
}

static json_t *cmd_drain(struct reload *rl, json_t *req)
{
	const char *name = str_arg(req, "listener");
	unsigned conns;
	char err[256];

	if (reload_drain(rl, name, &conns, err, sizeof(err)) < 0)
		return ctl_error("drain refused: %s", err);
	return ok(json_pack("{s:s,s:i}", "listener", name, "connections", (int)conns));
}

static json_t *conn_json(const struct worker_conn_info *ci)
{
	json_t *o = json_pack("{s:i,s:s,s:s,s:s,s:s,s:I,s:I,s:I,s:I}", "worker", (int)ci->worker,
			      "listener", ci->listener, "peer", ci->peer, "phase", ci->phase,
			      "tier", ci->tier, "bytes_client_to_backend", (json_int_t)ci->c2b,
			      "bytes_backend_to_client", (json_int_t)ci->b2c, "age_ms",
			      (json_int_t)ci->age_ms, "idle_ms", (json_int_t)ci->idle_ms);

	json_object_set_new(o, "sni", ci->sni[0] ? json_string(ci->sni) : json_null());
	json_object_set_new(o, "version", ci->version ? json_string(ci->version) : json_null());
	json_object_set_new(o, "cipher", ci->cipher ? json_string(ci->cipher) : json_null());
	json_object_set_new(o, "backend", ci->backend[0] ? json_string(ci->backend) : json_null());
	return o;
}

static char *dup_arg(json_t *req, const char *key)
{
	const char *v = str_arg(req, key);

	return v ? strdup(v) : NULL;
}

static json_t *cmd_connections(struct reload *rl, json_t *req)
{
	json_t *lim = json_object_get(req, "limit"), *arr, *r;
	const char *tier = str_arg(req, "tier");
	struct worker_call *call;
	json_int_t limit = CONNS_DEFAULT;
	size_t total = 0;
	bool complete;

	if (lim && (!json_is_integer(lim) || json_integer_value(lim) < 1 ||
		    json_integer_value(lim) > CONNS_MAX))
		return ctl_error("connections: limit must be an integer from 1 to %d", CONNS_MAX);
	if (lim)
		limit = json_integer_value(lim);
	if (tier && strcmp(tier, "none") != 0 && stats_tier_by_name(tier) == KTLSD_TIER_NONE)
		return ctl_error("connections: unknown tier \"%s\" (none, userspace, ktls-splice, "
				 "ktls-sockmap, sockmap)",
				 tier);
	call = worker_call_new(WORKER_MSG_CONNS, rl->n_workers);
	if (!call)
		return ctl_error("out of memory");
	call->filter.listener = dup_arg(req, "listener");
	call->filter.sni = dup_arg(req, "sni");
	call->filter.tier = dup_arg(req, "tier");
	for (unsigned k = 0; k < rl->n_workers; k++) {
		call->msgs[k].conns.out = calloc((size_t)limit, sizeof(struct worker_conn_info));
		call->msgs[k].conns.cap = call->msgs[k].conns.out ? (size_t)limit : 0;
	}
	worker_call_post(call, rl->workers);
	complete = worker_call_wait(call, CONNS_TIMEOUT_MS) == 0;
	arr = json_array();
	for (unsigned k = 0; k < rl->n_workers; k++) {
		struct worker_msg *m = &call->msgs[k];

		if (!complete)
			continue; /* a late worker may still be writing its part */
		total += m->conns.matched;
		for (size_t i = 0; i < m->conns.n && json_array_size(arr) < (size_t)limit; i++)
			json_array_append_new(arr, conn_json(&m->conns.out[i]));
	}
	worker_call_put(call);
	if (!complete)
		return ctl_error("connections: a worker did not answer within %d ms",
				 CONNS_TIMEOUT_MS);
	r = json_pack("{s:I,s:I,s:o}", "total", (json_int_t)total, "shown",
		      (json_int_t)json_array_size(arr), "connections", arr);
	return ok(r);
}

static json_t *cmd_help(struct reload *rl, json_t *req);

/* Fields each command takes; those marked required must be non-empty strings. */
struct arg {
	const char *name;
	bool required;
	bool integer;
};

#define OPT(n)                                                                                     \
	{                                                                                          \
		.name = n                                                                          \
	}
#define REQ(n)                                                                                     \
	{                                                                                          \
		.name = n, .required = true                                                        \
	}
#define INT(n)                                                                                     \
	{                                                                                          \
		.name = n, .integer = true                                                         \
	}
#define NONE                                                                                       \
	{                                                                                          \
		{                                                                                  \
			.name = NULL                                                               \
		}                                                                                  \
	}

static const struct cmd {
	const char *name;
	json_t *(*fn)(struct reload *rl, json_t *req);
	struct arg args[5]; /* NULL-terminated */
	const char *help;
} cmds[] = {
	{ "version", cmd_version, NONE, "version, build and datapath support" },
	{ "stats", cmd_stats, NONE, "counters by listener" },
	{ "listeners", cmd_listeners, NONE, "listeners, their state and connections" },
	{ "connections",
	  cmd_connections,
	  { OPT("listener"), OPT("sni"), OPT("tier"), INT("limit") },
	  "open connections (filters: listener, sni pattern, tier; limit, default 100)" },
	{ "certs", cmd_certs, { OPT("name") }, "certificates: names, key type, expiry, use" },
	{ "reload", cmd_reload, NONE, "re-read the config file and swap it in" },
	{ "cert-set",
	  cmd_cert_set,
	  { REQ("name"), REQ("cert"), REQ("key") },
	  "replace a certificate's files with PEM texts, then reload" },
	{ "cert-del",
	  cmd_cert_del,
	  { REQ("name") },
	  "take a certificate out of every listener until cert-set or restart" },
	{ "drain",
	  cmd_drain,
	  { REQ("listener") },
	  "stop accepting on a listener; its connections finish" },
	{ "help", cmd_help, NONE, "this list" },
};

static json_t *cmd_help(struct reload *rl, json_t *req)
{
	json_t *list = json_array();

	for (size_t i = 0; i < ARRAY_SIZE(cmds); i++) {
		json_t *args = json_array();

		for (const struct arg *a = cmds[i].args; a->name; a++)
			json_array_append_new(args, json_string(a->name));
		json_array_append_new(list, json_pack("{s:s,s:o,s:s}", "cmd", cmds[i].name, "args",
						      args, "help", cmds[i].help));
	}
	return ok(json_pack("{s:o}", "commands", list));
}

static json_t *check_args(const struct cmd *c, json_t *req)
{
	const char *key;
	json_t *v;

	json_object_foreach (req, key, v) {
		const struct arg *a = c->args;

		if (strcmp(key, "cmd") == 0)
			continue;
		while (a->name && strcmp(a->name, key) != 0)
			a++;
		if (!a->name)
			return ctl_error("%s: unknown field \"%s\"", c->name, key);
		if (!a->integer && !json_is_string(v))
			return ctl_error("%s: \"%s\" must be a string", c->name, key);
	}
	for (const struct arg *a = c->args; a->name; a++) {
		const char *s = str_arg(req, a->name);

		if (a->required && (!s || !*s))
			return ctl_error("%s: \"%s\" is required", c->name, a->name);
	}
	return NULL;
}

json_t *ctl_request(struct reload *rl, const char *line, size_t len)
{
	json_error_t jerr;
	json_t *req = json_loadb(line, len, JSON_REJECT_DUPLICATES, &jerr), *r;
	const char *name;

	if (!req)
		return ctl_error("malformed request: %s (column %d)", jerr.text, jerr.column);
	name = str_arg(req, "cmd");
	if (!json_is_object(req) || !name) {
		r = ctl_error("malformed request: expected {\"cmd\": \"...\", ...}");
		goto out;
	}
	for (size_t i = 0; i < ARRAY_SIZE(cmds); i++) {
		if (strcmp(cmds[i].name, name) != 0)
			continue;
		r = check_args(&cmds[i], req);
		if (!r)
			r = cmds[i].fn(rl, req);
		goto out;
	}
	r = ctl_error("unknown command \"%.64s\" (try \"help\")", name);
out:
	json_decref(req);
	return r ? r : ctl_error("out of memory");
}
