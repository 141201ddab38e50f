/* version — ktlsd's release version, as `ktlsd --version`, the control socket's version reply
 * (docs/control.md) and the ktlsd_build_info metric (docs/metrics.md) print it. */
#ifndef KTLSD_VERSION_H
#define KTLSD_VERSION_H

#define KTLSD_VERSION "0.1.0"

#endif
