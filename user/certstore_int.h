/* certstore_int.h — what certstore.c (loading), certstore_select.c (matching) and
 * certstore_hello.c (ClientHello) share. Not for other modules: use certstore.h. */
#ifndef KTLSD_CERTSTORE_INT_H
#define KTLSD_CERTSTORE_INT_H

#include "certstore.h"

enum certstore_keytype { CERTSTORE_KEY_RSA, CERTSTORE_KEY_ECDSA, CERTSTORE_KEY_OTHER };

struct certstore_cert {
	X509 *leaf;
	STACK_OF(X509) *chain; /* intermediates, in file order; never NULL */
	EVP_PKEY *key;
	char **names; /* normalised: lowercase, no trailing dot */
	size_t n_names;
	enum certstore_keytype type;
	unsigned int curve; /* CERTSTORE_CURVE_* for ECDSA, 0 otherwise */
	int bits;
	time_t not_before;
	time_t not_after;
	char *subject;
	char *path;
	char key_desc[24];
};

#endif
