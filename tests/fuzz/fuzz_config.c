/* libFuzzer target: the config loader (JSON parse, field tables, cross-references) on arbitrary
 * bytes. Every input must end in a snapshot or a list of errors; leaks and memory errors are
 * caught by ASan, undefined behaviour by UBSan. The bytes go through a memfd so no disk I/O. */
#include <stdint.h>
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>

#include "config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int fd = -1;
	static char path[64];
	struct cfg_errors errs = { 0 };
	struct config *cfg = NULL;

	if (fd < 0) {
		fd = memfd_create("ktlsd-fuzz-config", 0);
		if (fd < 0)
			return 0;
		snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	}
	if (ftruncate(fd, 0) < 0 || pwrite(fd, data, size, 0) != (ssize_t)size)
		return 0;
	if (config_load(path, &cfg, &errs) == 0) {
		if (errs.n != 0)
			__builtin_trap(); /* a snapshot never comes with errors */
		config_put(cfg);
	} else if (errs.n == 0) {
		__builtin_trap(); /* a refusal always says why */
	}
	config_errors_free(&errs);
	return 0;
}
