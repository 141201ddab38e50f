/* ktlsd — arguments, signals, startup in layer order (config → state → workers → control),
 * reload on SIGHUP, drain and teardown in reverse. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "bpfmap.h"
#include "admit.h"
#include "config.h"
#include "ctl.h"
#include "datapath.h"
#include "log.h"
#include "privdrop.h"
#include "reload.h"
#include "state.h"
#include "stats.h"
#include "version.h"
#include "worker.h"

static void usage(FILE *f)
{
	fprintf(f, "usage: ktlsd -c CONFIG.json [-f] [-l err|warn|info|debug] [--check]\n"
		   "  -c, --config FILE   configuration (JSON; see docs/configuration.md)\n"
		   "  -f, --foreground    stay in the foreground (default: detach once serving)\n"
		   "  -l, --log-level L   log threshold (default info)\n"
		   "      --check         validate the config and every certificate, then exit\n"
		   "  -V, --version       print the version\n");
}

static void print_errors(const struct cfg_errors *errs)
{
	for (size_t i = 0; i < errs->n; i++)
		fprintf(stderr, "%s\n", errs->msgs[i]);
}

/* Loads and validates everything the daemon would serve with. */
static int load(const char *path, const struct datapath_caps *caps, struct config **cfg,
		struct state **st, struct cfg_errors *errs)
{
	int ret = config_load(path, cfg, errs);

	if (ret < 0)
		return ret;
	datapath_check(*cfg, caps, errs);
	if (errs->n == 0 && (ret = state_build(*cfg, st, errs)) < 0)
		return ret;
	return errs->n ? -EINVAL : 0;
}

static void raise_nofile(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
			log_warn("cannot raise the open-file limit: %s", strerror(errno));
	}
}

static unsigned worker_count(const struct config *cfg)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);

	if (cfg->workers)
		return cfg->workers;
	return n > 0 ? (unsigned)n : 1;
}

/* Waits for signals: SIGHUP reloads (the code path of `ktlsctl reload`), SIGTERM/SIGINT drain
 * and exit. The control thread stops first, so no change can start during the drain. */
static void serve(struct worker *workers, unsigned n, struct reload *rl, struct ctl *ctl,
		  const sigset_t *set)
{
	struct reload_report rep;
	siginfo_t si;

	for (;;) {
		if (sigwaitinfo(set, &si) < 0)
			continue;
		if (si.si_signo == SIGHUP) {
			log_info("SIGHUP: reloading %s", rl->path);
			rep = (struct reload_report){ 0 };
			if (reload_run(rl, &rep) < 0) /* it logged every problem */
				log_debug("SIGHUP: the running config is unchanged");
			reload_report_free(&rep);
			continue;
		}
		log_info("signal %d: draining (no new connections; existing ones may finish)",
			 si.si_signo);
		break;
	}
	ctl_close(ctl);
	for (unsigned i = 0; i < n; i++)
		worker_drain(&workers[i]);
	for (unsigned i = 0; i < n; i++)
		worker_join(&workers[i]);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "foreground", no_argument, NULL, 'f' },
		{ "log-level", required_argument, NULL, 'l' },
		{ "check", no_argument, NULL, 'C' },
		{ "version", no_argument, NULL, 'V' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct cfg_errors errs = { 0 };
	struct datapath_caps caps;
	struct config *cfg = NULL;
	struct state *st = NULL;
	struct worker *workers = NULL;
	struct ctl ctl = CTL_INIT;
	struct reload rl;
	struct privdrop_id id;
	const char *path = NULL;
	bool foreground = false, check = false, rl_ok = false;
	unsigned n = 0, started = 0;
	sigset_t set;
	int opt, ret = 1;

	while ((opt = getopt_long(argc, argv, "c:fl:Vh", opts, NULL)) != -1) {
		switch (opt) {
		case 'c':
			path = optarg;
			break;
		case 'f':
			foreground = true;
			break;
		case 'l':
			if (log_set_level(optarg) < 0) {
				fprintf(stderr, "ktlsd: unknown log level \"%s\"\n", optarg);
				return 2;
			}
			break;
		case 'C':
			check = true;
			break;
		case 'V':
			printf("ktlsd %s (%s)\n", KTLSD_VERSION, OpenSSL_version(OPENSSL_VERSION));
			return 0;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (!path || optind != argc) {
		usage(stderr);
		return 2;
	}

	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &set, NULL); /* workers inherit the mask; main waits */
	signal(SIGPIPE, SIG_IGN);

	datapath_probe(&caps);
	if (load(path, &caps, &cfg, &st, &errs) < 0) {
		print_errors(&errs);
		fprintf(stderr, "ktlsd: %s: %zu problem%s\n", path, errs.n, errs.n == 1 ? "" : "s");
		goto cleanup;
	}
	if (check) {
		printf("%s: OK (%zu listener%s)\n", path, cfg->n_listeners,
		       cfg->n_listeners == 1 ? "" : "s");
		ret = 0;
		goto cleanup;
	}
	raise_nofile();
	if (bpfmap_loaded()) {
		char why[256] = "";

		if (bpfmap_pin(cfg->bpf.pin_path, why, sizeof(why)) < 0) {
			fprintf(stderr, "%s: bpf.pin_path: %s\n", path, why);
			goto cleanup;
		}
		log_info("bpf: maps and programs pinned under %s (docs/bpftool.md)",
			 cfg->bpf.pin_path);
	}
	if (admit_init(cfg) < 0)
		goto cleanup;
	n = worker_count(cfg);
	workers = calloc(n, sizeof(*workers));
	if (!workers)
		goto cleanup;
	for (unsigned i = 0; i < n; i++)
		if (worker_init(&workers[i], i, st) < 0)
			goto cleanup;
	rl_ok = true;
	if (reload_init(&rl, path, &caps, workers, n, st) < 0 || ctl_open(&ctl, cfg, &rl) < 0)
		goto cleanup;
	if (!foreground && daemon(1, 1) < 0) {
		log_err("daemon: %s", strerror(errno));
		goto cleanup;
	}
	/* Everything that needs root is done; no thread runs yet (capabilities are per thread). */
	if (privdrop_resolve(cfg, &id, &errs) < 0 || privdrop_apply(&id) < 0)
		goto cleanup;
	if (log_start() < 0)
		log_warn("log: no writer thread: workers write their own lines");
	for (; started < n; started++)
		if (worker_start(&workers[started]) < 0)
			goto cleanup;
	if (ctl_start(&ctl) < 0)
		goto cleanup;
	for (size_t i = 0; i < cfg->n_listeners; i++)
		log_info("listener %s: %s on %s → backend %s", cfg->listeners[i].name,
			 cfg_protocol_names[cfg->listeners[i].protocol],
			 cfg->listeners[i].bind.text,
			 cfg->listeners[i].backend_name ? cfg->listeners[i].backend_name : "-");
	log_info("ktlsd %s serving with %u worker%s; control socket %s%s%s", KTLSD_VERSION, n,
		 n == 1 ? "" : "s", cfg->control.socket,
		 cfg->metrics.enabled ? "; metrics on " : "",
		 cfg->metrics.enabled ? cfg->metrics.bind.text : "");
	serve(workers, n, &rl, &ctl, &set);
	started = 0;
	log_info("drained; exiting");
	ret = 0;
cleanup:
	ctl_close(&ctl);
	for (unsigned i = 0; i < started; i++) {
		worker_drain(&workers[i]);
		worker_join(&workers[i]);
	}
	for (unsigned i = 0; workers && i < n; i++)
		worker_destroy(&workers[i]);
	free(workers);
	if (rl_ok)
		reload_destroy(&rl);
	state_put(st);
	config_put(cfg);
	config_errors_free(&errs);
	bpfmap_unload();
	stats_exit();
	admit_exit();
	log_stop(2000);
	return ret;
}
