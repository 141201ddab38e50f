/* libFuzzer target: the control protocol, as a client that reached the control socket drives it.
 *
 * The input is split into lines exactly as ctl.c frames them (newline ends a request, a trailing
 * CR is dropped, empty lines are skipped, the rest without a newline is the last request) and each
 * line goes through ctl_request() against a real running-config object: a config file loaded from
 * a private directory (one tcp listener, one certificate whose files do not exist yet), its state,
 * and a reload object with no workers, so every command runs its parsing, its action (reload,
 * cert-set, cert-del, drain and connections really run, with nothing to wait for) and its reply
 * formatting. Checks what every client relies on: the reply is one JSON object that serialises
 * to a single line, and it has either "ok": true or an "error" string.
 *
 * State a command leaves behind (drained listeners, cert-del's list, files cert-set wrote) is
 * reset after each input so that every input is reproducible on its own. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ctl.h"
#include "datapath.h"
#include "log.h"
#include "reload.h"
#include "state.h"
#include "stats.h"

static struct reload rl;
static char dir[64], cert_path[96], key_path[96];

static const char config_text[] =
    "{\"listeners\": [{\"name\": \"t\", \"bind\": \"127.0.0.1:1\", \"protocol\": \"tcp\","
    " \"backend\": \"b\"}],"
    " \"certificates\": {\"c\": {\"cert\": \"c.pem\", \"key\": \"c.key\","
    " \"domains\": [\"a.example\"]}},"
    " \"backends\": {\"b\": {\"servers\": [\"127.0.0.1:2\"]}}}\n";

static void remove_dir(void)
{
	char path[96];

	snprintf(path, sizeof(path), "%s/ktlsd.json", dir);
	unlink(path);
	unlink(cert_path);
	unlink(key_path);
	rmdir(dir);
}

static void setup(void)
{
	struct cfg_errors errs = { 0 };
	struct datapath_caps caps = { 0 };
	struct config *cfg = NULL;
	struct state *st = NULL;
	char path[96];
	FILE *f;

	log_set_level("err");
	snprintf(dir, sizeof(dir), "/tmp/ktlsd-fuzz-ctl-XXXXXX");
	if (!mkdtemp(dir))
		abort();
	snprintf(path, sizeof(path), "%s/ktlsd.json", dir);
	snprintf(cert_path, sizeof(cert_path), "%s/c.pem", dir);
	snprintf(key_path, sizeof(key_path), "%s/c.key", dir);
	atexit(remove_dir);
	f = fopen(path, "w");
	if (!f || fputs(config_text, f) < 0 || fclose(f) != 0)
		abort();
	datapath_probe(&caps);
	if (config_load(path, &cfg, &errs) < 0 || state_build(cfg, &st, &errs) < 0 ||
	    reload_init(&rl, path, &caps, NULL, 0, st) < 0)
		abort();
	state_put(st);
	config_put(cfg);
}

/* What a command may leave behind, put back as it was. */
static void reset(void)
{
	bool wrote;

	for (size_t i = 0; i < rl.n_deleted; i++)
		free(rl.deleted[i]);
	rl.n_deleted = 0;
	memset(rl.drained, 0, rl.st->cfg->n_listeners * sizeof(*rl.drained));
	wrote = unlink(cert_path) == 0;
	wrote |= unlink(key_path) == 0;
	if (wrote)
		reload_certs_refresh(&rl);
}

static void check_reply(json_t *r)
{
	char *text;

	if (!json_is_object(r))
		__builtin_trap();
	if (!json_is_true(json_object_get(r, "ok")) && !json_is_string(json_object_get(r, "error")))
		__builtin_trap(); /* neither a success nor a reason */
	text = json_dumps(r, JSON_COMPACT);
	if (!text || strchr(text, '\n'))
		__builtin_trap(); /* one reply per line */
	free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *p = (const char *)data, *end = p + size;
	static int once;

	if (!once++)
		setup();
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t len = (size_t)((nl ? nl : end) - p);
		json_t *r;

		if (len && p[len - 1] == '\r' && nl)
			len--;
		if (len && len <= CTL_LINE_MAX) {
			r = ctl_request(&rl, p, len);
			check_reply(r);
			json_decref(r);
		}
		p = nl ? nl + 1 : end;
	}
	reset();
	return 0;
}
