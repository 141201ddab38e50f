/* ktlsctl — the control client: turns a command line into one JSON request for ktlsd's control
 * socket (docs/control.md), and prints the reply as a table, or raw with -j. The exit status is 0
 * for a reply without "error", 1 for an error reply or no reply, 2 for a usage error. */
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <jansson.h>

#define DEFAULT_SOCKET "/run/ktlsd/ctl.sock"
#define PEM_MAX (60u << 10)

static void usage(FILE *f)
{
	fprintf(f, "usage: ktlsctl [-s SOCKET] [-j] COMMAND [ARGS]\n"
		   "  -s SOCKET   control socket (default $KTLSD_SOCKET or " DEFAULT_SOCKET ")\n"
		   "  -j          print the reply as JSON, as received\n"
		   "  -h          this help\n"
		   "commands:\n"
		   "  version                         version, pid, config, datapath support\n"
		   "  stats                           counters by listener\n"
		   "  listeners                       listeners, state, connections\n"
		   "  connections [listener=NAME] [sni=PATTERN] [tier=TIER] [limit=N]\n"
		   "                                  open connections (default limit 100)\n"
		   "  certs [NAME]                    certificates: key, expiry, names, users\n"
		   "  reload                          re-read the config file and swap it in\n"
		   "  cert-set NAME CERT.pem [KEY.pem]\n"
		   "                                  replace a certificate's files, then reload\n"
		   "                                  (without KEY.pem, CERT.pem holds both)\n"
		   "  cert-del NAME                   take a certificate out of every listener\n"
		   "  drain LISTENER                  stop accepting on a listener; let it finish\n"
		   "  raw JSON                        send one request line as given\n"
		   "exit status: 0 ok, 1 error reply or no reply, 2 usage\n");
}

static void die_usage(const char *fmt, ...)
{
	va_list ap;

	fputs("ktlsctl: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputs("\n", stderr);
	exit(2);
}

static char *read_file(const char *path)
{
	FILE *f = fopen(path, "r");
	char *buf = malloc(PEM_MAX + 1);
	size_t n;

	if (!f || !buf) {
		fprintf(stderr, "ktlsctl: %s: %s\n", path, strerror(errno));
		exit(1);
	}
	n = fread(buf, 1, PEM_MAX + 1, f);
	fclose(f);
	if (n > PEM_MAX) {
		fprintf(stderr, "ktlsctl: %s: larger than %u bytes\n", path, PEM_MAX);
		exit(1);
	}
	buf[n] = '\0';
	return buf;
}

/* Splits a PEM holding a chain and a key: the PRIVATE KEY blocks go to *key. */
static void split_pem(const char *all, char **cert, char **key)
{
	size_t len = strlen(all);
	const char *p = all;

	*cert = calloc(1, len + 1);
	*key = calloc(1, len + 1);
	while (*p) {
		const char *end = strstr(p, "-----END "), *stop;
		bool is_key;

		if (!end) {
			strcat(*cert, p);
			break;
		}
		stop = strchr(end + 9, '\n');
		stop = stop ? stop + 1 : p + strlen(p);
		is_key = strstr(end, "PRIVATE KEY-----") && strstr(end, "PRIVATE KEY-----") < stop;
		strncat(is_key ? *key : *cert, p, (size_t)(stop - p));
		p = stop;
	}
}

static json_t *build_request(int argc, char **argv)
{
	const char *cmd = argv[0];
	json_t *req;

	if (strcmp(cmd, "raw") == 0) {
		json_error_t e;

		if (argc != 2 || !(req = json_loads(argv[1], 0, &e)))
			die_usage("raw: one JSON request expected");
		return req;
	}
	req = json_pack("{s:s}", "cmd", cmd);
	if (!strcmp(cmd, "version") || !strcmp(cmd, "stats") || !strcmp(cmd, "listeners") ||
	    !strcmp(cmd, "reload") || !strcmp(cmd, "help")) {
		if (argc != 1)
			die_usage("%s takes no arguments", cmd);
	} else if (!strcmp(cmd, "certs")) {
		if (argc > 2)
			die_usage("certs [NAME]");
		if (argc == 2)
			json_object_set_new(req, "name", json_string(argv[1]));
	} else if (!strcmp(cmd, "cert-del") || !strcmp(cmd, "drain")) {
		if (argc != 2)
			die_usage("%s %s", cmd, cmd[0] == 'd' ? "LISTENER" : "NAME");
		json_object_set_new(req, cmd[0] == 'd' ? "listener" : "name", json_string(argv[1]));
	} else if (!strcmp(cmd, "cert-set")) {
		char *cert, *key, *all;

		if (argc != 3 && argc != 4)
			die_usage("cert-set NAME CERT.pem [KEY.pem]");
		if (argc == 4) {
			cert = read_file(argv[2]);
			key = read_file(argv[3]);
		} else {
			all = read_file(argv[2]);
			split_pem(all, &cert, &key);
			free(all);
			if (!*key)
				die_usage("%s holds no private key: give KEY.pem", argv[2]);
		}
		json_object_set_new(req, "name", json_string(argv[1]));
		json_object_set_new(req, "cert", json_string(cert));
		json_object_set_new(req, "key", json_string(key));
		free(cert);
		free(key);
	} else if (!strcmp(cmd, "connections")) {
		for (int i = 1; i < argc; i++) {
			char *eq = strchr(argv[i], '=');

			if (!eq || eq == argv[i])
				die_usage("connections: KEY=VALUE expected, got \"%s\"", argv[i]);
			*eq = '\0';
			if (!strcmp(argv[i], "limit"))
				json_object_set_new(req, "limit", json_integer(atoll(eq + 1)));
			else
				json_object_set_new(req, argv[i], json_string(eq + 1));
		}
	} else {
		die_usage("unknown command \"%s\" (ktlsctl -h lists them)", cmd);
	}
	return req;
}

/* Sends the request line and reads one reply line. */
static char *exchange(const char *sock, const char *line)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	size_t len = 0, cap = 65536, off = 0, n = strlen(line);
	char *buf = malloc(cap);
	ssize_t r;
	int fd;

	if (strlen(sock) >= sizeof(sa.sun_path))
		die_usage("%s: socket path too long", sock);
	strcpy(sa.sun_path, sock);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		fprintf(stderr, "ktlsctl: %s: %s (is ktlsd running with this control socket?)\n",
			sock, strerror(errno));
		exit(1);
	}
	while (off < n) {
		r = send(fd, line + off, n - off, MSG_NOSIGNAL);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			break; /* the daemon may have answered and closed: read its reply */
		off += (size_t)r;
	}
	for (;;) {
		if (len + 1 >= cap && !(buf = realloc(buf, cap *= 2))) {
			fprintf(stderr, "ktlsctl: out of memory\n");
			exit(1);
		}
		r = read(fd, buf + len, cap - 1 - len);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		len += (size_t)r;
		if (memchr(buf + len - (size_t)r, '\n', (size_t)r))
			break;
	}
	close(fd);
	buf[len] = '\0';
	if (!len) {
		fprintf(stderr, "ktlsctl: %s: no reply\n", sock);
		exit(1);
	}
	return buf;
}

/* ---- human output ---- */

struct table {
	size_t cols, rows;
	char **cells; /* rows * cols */
};

static void row(struct table *t, ...)
{
	va_list ap;

	t->cells = realloc(t->cells, (t->rows + 1) * t->cols * sizeof(char *));
	va_start(ap, t);
	for (size_t c = 0; c < t->cols; c++) {
		const char *v = va_arg(ap, const char *);

		t->cells[t->rows * t->cols + c] = strdup(v && *v ? v : "-");
	}
	va_end(ap);
	t->rows++;
}

static void table_print(struct table *t)
{
	size_t w[16] = { 0 };

	for (size_t r = 0; r < t->rows; r++)
		for (size_t c = 0; c < t->cols; c++)
			if (strlen(t->cells[r * t->cols + c]) > w[c])
				w[c] = strlen(t->cells[r * t->cols + c]);
	for (size_t r = 0; r < t->rows; r++) {
		for (size_t c = 0; c < t->cols; c++) {
			const char *v = t->cells[r * t->cols + c];

			if (c + 1 == t->cols)
				printf("%s\n", v);
			else
				printf("%-*s  ", (int)w[c], v);
			free(t->cells[r * t->cols + c]);
		}
	}
	free(t->cells);
}

static const char *str(json_t *o, const char *key)
{
	const char *v = json_string_value(json_object_get(o, key));

	return v ? v : "-";
}

/* A number or a path to one ("connections.active"), as text in one of 16 rotating buffers. */
static const char *num(json_t *o, const char *path)
{
	static char bufs[16][32];
	static unsigned next;
	char key[64], *dot, *k = key;
	char *b = bufs[next++ % 16];

	snprintf(key, sizeof(key), "%s", path);
	while ((dot = strchr(k, '.'))) {
		*dot = '\0';
		o = json_object_get(o, k);
		k = dot + 1;
	}
	o = json_object_get(o, k);
	if (json_is_integer(o))
		snprintf(b, 32, "%lld", (long long)json_integer_value(o));
	else
		snprintf(b, 32, "-");
	return b;
}

static const char *joined(json_t *arr)
{
	static char buf[1024];
	size_t i, len = 0;
	json_t *v;

	buf[0] = '\0';
	json_array_foreach (arr, i, v) {
		const char *s = json_string_value(v);

		if (len < sizeof(buf))
			len += (size_t)snprintf(buf + len, sizeof(buf) - len, "%s%s", i ? "," : "",
						s ? s : "?");
	}
	return buf[0] ? buf : "-";
}

static void print_stats(json_t *rep)
{
	struct table t = { .cols = 10 };
	const char *name;
	json_t *l;

	row(&t, "LISTENER", "ACTIVE", "TOTAL", "HS_OK", "HS_FAILED", "HS_TIMEOUT", "HS_ABORTED",
	    "BYTES_C2B", "BYTES_B2C", "REFUSED");
	json_object_foreach (json_object_get(rep, "listeners"), name, l)
		row(&t, name, num(l, "connections.active"), num(l, "connections.total"),
		    num(l, "handshakes.ok"), num(l, "handshakes.failed"),
		    num(l, "handshakes.timeout"), num(l, "handshakes.aborted"),
		    num(l, "bytes.client_to_backend"), num(l, "bytes.backend_to_client"),
		    num(l, "limit_refusals.max_connections"));
	table_print(&t);
	printf("reloads: %s ok, %s failed; up %ss\n", num(rep, "reloads.ok"),
	       num(rep, "reloads.failed"), num(rep, "uptime_s"));
}

static void print_listeners(json_t *rep)
{
	struct table t = { .cols = 9 };
	size_t i;
	json_t *l;

	row(&t, "NAME", "BIND", "PROTOCOL", "STATE", "ACTIVE", "TOTAL", "MAX", "BACKEND",
	    "CERTIFICATES");
	json_array_foreach (json_object_get(rep, "listeners"), i, l)
		row(&t, str(l, "name"), str(l, "bind"), str(l, "protocol"), str(l, "state"),
		    num(l, "connections.active"), num(l, "connections.total"),
		    num(l, "max_connections"), str(l, "backend"),
		    joined(json_object_get(l, "certificates")));
	table_print(&t);
}

static void print_connections(json_t *rep)
{
	struct table t = { .cols = 11 };
	size_t i;
	json_t *c;

	row(&t, "LISTENER", "PEER", "SNI", "PHASE", "TIER", "VERSION", "CIPHER", "BACKEND", "C2B",
	    "B2C", "AGE_MS");
	json_array_foreach (json_object_get(rep, "connections"), i, c)
		row(&t, str(c, "listener"), str(c, "peer"), str(c, "sni"), str(c, "phase"),
		    str(c, "tier"), str(c, "version"), str(c, "cipher"), str(c, "backend"),
		    num(c, "bytes_client_to_backend"), num(c, "bytes_backend_to_client"),
		    num(c, "age_ms"));
	table_print(&t);
	printf("%s of %s connections shown\n", num(rep, "shown"), num(rep, "total"));
}

static void print_certs(json_t *rep)
{
	struct table t = { .cols = 7 };
	char users[1024];
	size_t i;
	json_t *c;

	row(&t, "NAME", "KEY", "NOT_AFTER", "DAYS_LEFT", "IN_USE_BY", "NAMES", "SUBJECT");
	json_array_foreach (json_object_get(rep, "certificates"), i, c) {
		snprintf(users, sizeof(users), "%s%s", joined(json_object_get(c, "in_use_by")),
			 json_is_true(json_object_get(c, "deleted")) ? " (deleted)" : "");
		if (json_object_get(c, "error"))
			row(&t, str(c, "name"), "error", str(c, "error"), "-", users, "-", "-");
		else
			row(&t, str(c, "name"), str(c, "key_type"), str(c, "not_after"),
			    num(c, "days_left"), users, joined(json_object_get(c, "names")),
			    str(c, "subject"));
	}
	table_print(&t);
}

static void print_change(const char *cmd, json_t *rep)
{
	json_t *l = json_object_get(rep, "listeners"), *w;
	size_t i;

	printf("%s: ok; listeners kept: %s", cmd, joined(json_object_get(l, "kept")));
	printf("; added: %s", joined(json_object_get(l, "added")));
	printf("; removed: %s\n", joined(json_object_get(l, "removed")));
	json_array_foreach (json_object_get(rep, "warnings"), i, w)
		printf("warning: %s\n", json_string_value(w));
}

static void print_version(json_t *rep)
{
	const char *tier;
	json_t *v;

	printf("ktlsd %s (%s, jansson %s)\npid %s, config %s, %s workers, up %ss\n",
	       str(rep, "version"), str(rep, "openssl"), str(rep, "jansson"), num(rep, "pid"),
	       str(rep, "config"), num(rep, "workers"), num(rep, "uptime_s"));
	json_object_foreach (json_object_get(rep, "datapath"), tier, v)
		printf("datapath %s: %s\n", tier, json_string_value(v));
}

static void print_reply(const char *cmd, json_t *rep)
{
	size_t i;
	json_t *c;

	if (!strcmp(cmd, "stats"))
		print_stats(rep);
	else if (!strcmp(cmd, "listeners"))
		print_listeners(rep);
	else if (!strcmp(cmd, "connections"))
		print_connections(rep);
	else if (!strcmp(cmd, "certs"))
		print_certs(rep);
	else if (!strcmp(cmd, "version"))
		print_version(rep);
	else if (!strcmp(cmd, "reload") || !strcmp(cmd, "cert-set") || !strcmp(cmd, "cert-del"))
		print_change(cmd, rep);
	else if (!strcmp(cmd, "drain"))
		printf("listener %s: draining; %s connection(s) finishing\n", str(rep, "listener"),
		       num(rep, "connections"));
	else if (!strcmp(cmd, "help"))
		json_array_foreach (json_object_get(rep, "commands"), i, c)
			printf("%-12s %-28s %s\n", str(c, "cmd"),
			       joined(json_object_get(c, "args")), str(c, "help"));
	else if (json_dumpf(rep, stdout, JSON_INDENT(2)) == 0)
		putchar('\n');
}

static void print_error(json_t *rep)
{
	json_t *p;
	size_t i;

	fprintf(stderr, "ktlsctl: %s\n", str(rep, "error"));
	json_array_foreach (json_object_get(rep, "problems"), i, p)
		fprintf(stderr, "  %s\n", json_string_value(p));
	json_array_foreach (json_object_get(rep, "warnings"), i, p)
		fprintf(stderr, "  warning: %s\n", json_string_value(p));
}

int main(int argc, char **argv)
{
	const char *sock = getenv("KTLSD_SOCKET") ? getenv("KTLSD_SOCKET") : DEFAULT_SOCKET;
	bool raw = false;
	json_t *req, *rep;
	json_error_t e;
	char *text, *line, *reply;
	int opt, status;

	while ((opt = getopt(argc, argv, "+s:jh")) != -1) {
		switch (opt) {
		case 's':
			sock = optarg;
			break;
		case 'j':
			raw = true;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind >= argc) {
		usage(stderr);
		return 2;
	}
	req = build_request(argc - optind, argv + optind);
	text = json_dumps(req, JSON_COMPACT);
	if (!text || strlen(text) > (64u << 10))
		die_usage("the request is larger than the control socket accepts (64 KiB)");
	if (asprintf(&line, "%s\n", text) < 0)
		die_usage("out of memory");
	free(text);
	reply = exchange(sock, line);
	rep = json_loads(reply, JSON_DISABLE_EOF_CHECK, &e);
	if (!rep) {
		fprintf(stderr, "ktlsctl: malformed reply from ktlsd: %s\n", e.text);
		return 1;
	}
	status = json_is_string(json_object_get(rep, "error")) ? 1 : 0;
	if (raw) {
		json_dumpf(rep, stdout, JSON_COMPACT);
		putchar('\n');
	} else if (status) {
		print_error(rep);
	} else {
		print_reply(json_string_value(json_object_get(req, "cmd")), rep);
	}
	json_decref(rep);
	json_decref(req);
	free(line);
	free(reply);
	return status;
}
