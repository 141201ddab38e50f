/* bpfmap — ktlsd's BPF objects (bpf/ktlsd.bpf.c through its bpftool skeleton): loading and
 * attaching the sockmap programs, pinning every map and program under bpf.pin_path for bpftool,
 * and the small calls the rest of the daemon makes on the maps (include/ktlsd_bpf.h).
 *
 * One set of objects per process, loaded once at startup before any worker runs; after that the
 * calls below are plain bpf(2) map operations, safe from any worker thread. Every call is a no-op
 * returning -ENODEV while nothing is loaded, so callers need not check first. */
#ifndef KTLSD_BPFMAP_H
#define KTLSD_BPFMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "ktlsd_bpf.h"

/* Loads the programs and maps and attaches the stream parser and verdict to the sockhash.
 * Returns 0 (also when already loaded) or a negative errno with the reason in why. */
int bpfmap_load(char *why, size_t len) __must_check;
bool bpfmap_loaded(void);
/* Relays a few bytes each way between two loopback connections through the sockhash, as a
 * connection would: the startup proof that the sockmap tier works on this kernel. */
int bpfmap_selftest(char *why, size_t len) __must_check;
/* Pins maps and programs as DIR/{sockhash,peers,conns,counters,ktlsd_parser,ktlsd_verdict}.
 * DIR is created (its parent must be on a bpf filesystem; /sys/fs/bpf is mounted if it is not)
 * and locked for the life of the process; pins a previous, dead ktlsd left there are replaced.
 * A DIR locked by a running ktlsd is an error. */
int bpfmap_pin(const char *dir, char *why, size_t len) __must_check;
/* Removes the pins (when this process made them) and frees the objects. */
void bpfmap_unload(void);

/* The socket's cookie (SO_COOKIE), or 0 when the kernel gives none. */
uint64_t bpfmap_cookie(int fd);

/* conns: creates or replaces the entry of a connection (key: client socket cookie). */
int bpfmap_conn_put(uint64_t key, const struct ktlsd_conn *v) __must_check;
int bpfmap_conn_get(uint64_t key, struct ktlsd_conn *v) __must_check;
void bpfmap_conn_del(uint64_t key);

/* Pairs two sockets of one connection: peers entries first, then both sockets in the sockhash,
 * so the verdict never sees half a pair. Undone entirely on failure. */
int bpfmap_pair_add(int cfd, uint64_t ccookie, int bfd, uint64_t bcookie,
		    uint32_t listener) __must_check;
/* Takes both sockets out of the sockhash, then their peers entries. */
void bpfmap_pair_del(uint64_t ccookie, uint64_t bcookie);

#endif
