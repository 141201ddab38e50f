/* ktlsctl — the control client: sends one JSON request line to ktlsd's control socket and prints
 * the reply (raw with -j). */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <jansson.h>

static void usage(FILE *f)
{
	fprintf(f, "usage: ktlsctl [-s SOCKET] [-j] COMMAND [ARGS]\n"
		   "  -s SOCKET   control socket (default /run/ktlsd/ctl.sock)\n"
		   "  -j          print the raw JSON reply\n"
		   "commands: version, stats, listeners, connections, certs, reload, drain LISTENER\n");
}

int main(int argc, char **argv)
{
	const char *sock = "/run/ktlsd/ctl.sock";
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	bool raw = false;
	char reply[65536];
	json_t *req, *rep;
	char *line;
	size_t got = 0;
	ssize_t r;
	int opt, fd;

	while ((opt = getopt(argc, argv, "s:jh")) != -1) {
		switch (opt) {
		case 's': sock = optarg; break;
		case 'j': raw = true; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind >= argc) {
		usage(stderr);
		return 2;
	}
	req = json_pack("{s:s}", "cmd", argv[optind]);
	if (optind + 1 < argc)
		json_object_set_new(req, "arg", json_string(argv[optind + 1]));
	line = json_dumps(req, JSON_COMPACT);
	json_decref(req);
	if (strlen(sock) >= sizeof(sa.sun_path)) {
		fprintf(stderr, "ktlsctl: socket path too long\n");
		return 2;
	}
	strcpy(sa.sun_path, sock);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		fprintf(stderr, "ktlsctl: %s: %s (is ktlsd running with this control socket?)\n",
			sock, strerror(errno));
		return 1;
	}
	if (dprintf(fd, "%s\n", line) < 0) {
		fprintf(stderr, "ktlsctl: write: %s\n", strerror(errno));
		return 1;
	}
	free(line);
	while (got < sizeof(reply) - 1 && (r = read(fd, reply + got, sizeof(reply) - 1 - got)) > 0) {
		got += (size_t)r;
		if (memchr(reply, '\n', got))
			break;
	}
	reply[got] = '\0';
	close(fd);
	rep = json_loads(reply, JSON_DISABLE_EOF_CHECK, NULL);
	if (!rep) {
		fprintf(stderr, "ktlsctl: malformed reply from ktlsd\n");
		return 1;
	}
	if (raw) {
		json_dumpf(rep, stdout, JSON_COMPACT);
		putchar('\n');
	} else {
		json_dumpf(rep, stdout, JSON_INDENT(2));
		putchar('\n');
	}
	r = json_is_string(json_object_get(rep, "error")) ? 1 : 0;
	json_decref(rep);
	return (int)r;
}
