/* vg — tells valgrind's memcheck about memory the kernel fills through io_uring: memcheck follows
 * system calls, not the rings, so a buffer an io_uring recv or read wrote would look
 * uninitialised to it and every use of the data a false report. Also says whether the process
 * runs under valgrind at all (ring.c then waits differently). Compiles to nothing without the
 * valgrind headers, and to a few instructions that do nothing outside valgrind with them. */
#ifndef KTLSD_VG_H
#define KTLSD_VG_H

#if defined(__has_include)
#if __has_include(<valgrind/memcheck.h>)
#include <valgrind/memcheck.h>
#define KTLSD_HAVE_MEMCHECK 1
#endif
#endif

/* n bytes at p were written by the kernel (an io_uring completion said so). */
#ifdef KTLSD_HAVE_MEMCHECK
#define vg_kernel_wrote(p, n) ((void)VALGRIND_MAKE_MEM_DEFINED((p), (n)))
#else
#define vg_kernel_wrote(p, n) ((void)(p), (void)(n))
#endif

/* Non-zero when running under valgrind (any tool). */
#ifdef KTLSD_HAVE_MEMCHECK
#define vg_running() (RUNNING_ON_VALGRIND != 0)
#else
#define vg_running() 0
#endif

#endif
