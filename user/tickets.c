#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/rand.h>

#include "log.h"
#include "tickets.h"

#define KEY_BYTES 80 /* name 16 | HMAC-SHA256 key 32 | AES-256 key 32, as nginx's files */
#define MAX_FILE_KEYS 64
#define MAX_FILE_SIZE 16384

struct tkey {
	uint8_t name[16];
	uint8_t hmac[32];
	uint8_t aes[32];
};

struct ring {
	pthread_mutex_t lock;
	struct ring *next; /* generated rings: the registry */
	char *listener;
	bool generated;
	uint32_t rotate_s;
	uint64_t created_s, epoch; /* generated: keys[0] is the key of epoch */
	size_t n, enc;		   /* keys in use; which one encrypts */
	struct tkey keys[MAX_FILE_KEYS];
};

static int ring_index = -1;
static pthread_once_t index_once = PTHREAD_ONCE_INIT;
static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static struct ring *registry;

static void ring_free(struct ring *r)
{
	if (!r)
		return;
	pthread_mutex_destroy(&r->lock);
	free(r->listener);
	OPENSSL_clear_free(r, sizeof(*r));
}

/* The context owns a ring read from a file; generated ones belong to the registry. */
static void ring_ex_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl,
			 void *argp)
{
	struct ring *r = ptr;

	if (r && !r->generated)
		ring_free(r);
}

static void index_init(void)
{
	ring_index = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, ring_ex_free);
}

static uint64_t mono_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec;
}

static struct ring *ring_new(const char *listener)
{
	struct ring *r = OPENSSL_zalloc(sizeof(*r));

	if (!r)
		return NULL;
	r->listener = strdup(listener);
	if (!r->listener || pthread_mutex_init(&r->lock, NULL) != 0) {
		free(r->listener);
		OPENSSL_free(r);
		return NULL;
	}
	return r;
}

/* The listener's own key from 80 bytes of key material: HKDF-SHA256, info = listener name. */
static int derive(const uint8_t *material, const char *listener, struct tkey *out)
{
	static const char salt[] = "ktlsd session ticket key";
	EVP_KDF *kdf = EVP_KDF_fetch(NULL, OSSL_KDF_NAME_HKDF, NULL);
	EVP_KDF_CTX *kctx = kdf ? EVP_KDF_CTX_new(kdf) : NULL;
	OSSL_PARAM params[5], *p = params;
	int ok;

	*p++ = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, "SHA256", 0);
	*p++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, (void *)material, KEY_BYTES);
	*p++ =
	    OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, (void *)salt, sizeof(salt) - 1);
	*p++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, (void *)listener,
						 strlen(listener));
	*p = OSSL_PARAM_construct_end();
	ok = kctx && EVP_KDF_derive(kctx, (unsigned char *)out, sizeof(*out), params) == 1;
	EVP_KDF_CTX_free(kctx);
	EVP_KDF_free(kdf);
	return ok ? 0 : -ENOMEM;
}

_Static_assert(sizeof(struct tkey) == KEY_BYTES, "struct tkey must be the 80-byte layout");

/* Generated rings: a new key per epoch of rotate_s seconds; the one before stays for
 * decryption during the next epoch only. Called with r->lock held. */
static void rotate(struct ring *r)
{
	uint64_t epoch = (mono_s() - r->created_s) / r->rotate_s;
	uint8_t material[KEY_BYTES];

	if (r->n && epoch == r->epoch)
		return;
	if (r->n && epoch == r->epoch + 1) {
		r->keys[1] = r->keys[0];
		r->n = 2;
	} else {
		r->n = 0;
	}
	if (RAND_priv_bytes(material, sizeof(material)) != 1 ||
	    derive(material, r->listener, &r->keys[0]) < 0) {
		/* Without a fresh key, keep issuing none rather than reuse an old one. */
		OPENSSL_cleanse(material, sizeof(material));
		r->n = 0;
		return;
	}
	OPENSSL_cleanse(material, sizeof(material));
	if (r->n == 0)
		r->n = 1;
	r->enc = 0;
	r->epoch = epoch;
}

static int set_mac_key(EVP_MAC_CTX *hctx, const struct tkey *k)
{
	OSSL_PARAM params[3];

	params[0] =
	    OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, (void *)k->hmac, sizeof(k->hmac));
	params[1] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, "SHA256", 0);
	params[2] = OSSL_PARAM_construct_end();
	return EVP_MAC_CTX_set_params(hctx, params) == 1 ? 0 : -1;
}

/* OpenSSL's ticket key callback (SSL_CTX_set_tlsext_ticket_key_evp_cb). Encrypt: 1 with the
 * encrypting key set up, 0 to issue no ticket. Decrypt: 0 for an unknown key name (a full
 * handshake follows), 1 for the encrypting key, 2 for an older one (the ticket is renewed), -1
 * on an internal error. */
static int ticket_cb(SSL *s, unsigned char key_name[16], unsigned char *iv, EVP_CIPHER_CTX *ectx,
		     EVP_MAC_CTX *hctx, int enc)
{
	struct ring *r = SSL_CTX_get_ex_data(SSL_get_SSL_CTX(s), ring_index);
	struct tkey k;
	size_t i = 0;
	int ret = 1;

	if (!r)
		return enc ? 0 : -1;
	pthread_mutex_lock(&r->lock);
	if (r->generated)
		rotate(r);
	if (enc) {
		if (r->n == 0)
			ret = 0;
		else
			k = r->keys[r->enc];
	} else {
		while (i < r->n && CRYPTO_memcmp(r->keys[i].name, key_name, 16) != 0)
			i++;
		if (i == r->n)
			ret = 0;
		else {
			k = r->keys[i];
			ret = i == r->enc ? 1 : 2;
		}
	}
	pthread_mutex_unlock(&r->lock);
	if (ret == 0)
		return 0;
	if (enc) {
		memcpy(key_name, k.name, 16);
		if (RAND_bytes(iv, 16) != 1 ||
		    EVP_EncryptInit_ex(ectx, EVP_aes_256_cbc(), NULL, k.aes, iv) != 1)
			ret = -1;
	} else if (EVP_DecryptInit_ex(ectx, EVP_aes_256_cbc(), NULL, k.aes, iv) != 1) {
		ret = -1;
	}
	if (ret > 0 && set_mac_key(hctx, &k) < 0)
		ret = -1;
	OPENSSL_cleanse(&k, sizeof(k));
	return ret;
}

/* ---- the key file ---- */

/* Decodes one base64 line into out (KEY_BYTES); 0 or -EINVAL. */
static int decode_line(const char *line, size_t len, uint8_t *out)
{
	uint8_t tmp[KEY_BYTES + 3];
	size_t pad = 0;
	int n;

	if (len != 108) /* base64 of 80 bytes */
		return -EINVAL;
	while (pad < 2 && line[len - 1 - pad] == '=')
		pad++;
	n = EVP_DecodeBlock(tmp, (const unsigned char *)line, (int)len);
	if (n < 0 || (size_t)n - pad != KEY_BYTES) {
		OPENSSL_cleanse(tmp, sizeof(tmp));
		return -EINVAL;
	}
	memcpy(out, tmp, KEY_BYTES);
	OPENSSL_cleanse(tmp, sizeof(tmp));
	return 0;
}

static int read_file(const char *path, char *buf, size_t cap, size_t *len, char *why, size_t whylen)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC), ret = 0;
	ssize_t n;

	if (fd < 0) {
		ret = -errno;
		snprintf(why, whylen, "%s: %s", path, strerror(errno));
		return ret;
	}
	*len = 0;
	while ((n = read(fd, buf + *len, cap - *len)) > 0)
		*len += (size_t)n;
	if (n < 0) {
		ret = -errno;
		snprintf(why, whylen, "%s: %s", path, strerror(errno));
	} else if (*len == cap) {
		snprintf(why, whylen, "%s: larger than %zu bytes", path, cap - 1);
		ret = -EFBIG;
	}
	close(fd);
	return ret;
}

/* Reads path into a new ring of listener keys. */
static int load_file(const char *path, const char *listener, struct ring **out, char *why,
		     size_t whylen)
{
	char *buf = OPENSSL_malloc(MAX_FILE_SIZE);
	struct ring *r = ring_new(listener);
	uint8_t material[KEY_BYTES];
	size_t len = 0, lineno = 0;
	char *p, *end;
	int ret = 0;

	ENSURE(buf && r, ENOMEM);
	GUARD(read_file(path, buf, MAX_FILE_SIZE, &len, why, whylen));
	for (p = buf; p < buf + len; p = end + 1) {
		size_t ll;

		end = memchr(p, '\n', (size_t)(buf + len - p));
		if (!end)
			end = buf + len;
		lineno++;
		ll = (size_t)(end - p);
		while (ll && isspace((unsigned char)p[ll - 1]))
			ll--;
		while (ll && isspace((unsigned char)*p)) {
			p++;
			ll--;
		}
		if (ll == 0 || *p == '#')
			continue;
		if (r->n == MAX_FILE_KEYS) {
			snprintf(why, whylen, "%s: more than %d keys", path, MAX_FILE_KEYS);
			ENSURE(false, EINVAL);
		}
		if (decode_line(p, ll, material) < 0) {
			snprintf(why, whylen,
				 "%s: line %zu: not a key (expected the base64 of %d "
				 "random bytes: openssl rand %d | base64 -w0)",
				 path, lineno, KEY_BYTES, KEY_BYTES);
			ENSURE(false, EINVAL);
		}
		ret = derive(material, listener, &r->keys[r->n]);
		OPENSSL_cleanse(material, sizeof(material));
		GUARD(ret);
		for (size_t i = 0; i < r->n; i++)
			if (CRYPTO_memcmp(r->keys[i].name, r->keys[r->n].name, 16) == 0) {
				snprintf(why, whylen,
					 "%s: line %zu: the same key as an earlier line", path,
					 lineno);
				ENSURE(false, EINVAL);
			}
		r->n++;
	}
	if (r->n == 0) {
		snprintf(why, whylen, "%s: no key (one per line: openssl rand %d | base64 -w0)",
			 path, KEY_BYTES);
		ENSURE(false, EINVAL);
	}
	r->enc = r->n >= 2 ? r->n - 2 : 0;
	*out = r;
	r = NULL;
cleanup:
	if (ret == -ENOMEM)
		snprintf(why, whylen, "out of memory");
	OPENSSL_clear_free(buf, MAX_FILE_SIZE);
	ring_free(r);
	return ret;
}

/* The listener's generated ring, made on first use and kept across reloads. */
static struct ring *generated_get(const char *listener, uint32_t rotate_s)
{
	struct ring *r;

	pthread_mutex_lock(&registry_lock);
	for (r = registry; r && strcmp(r->listener, listener) != 0; r = r->next)
		;
	if (!r && (r = ring_new(listener))) {
		r->generated = true;
		r->created_s = mono_s();
		r->next = registry;
		registry = r;
	}
	if (r) {
		pthread_mutex_lock(&r->lock);
		if (r->n && r->rotate_s != rotate_s) {
			/* A reload changed the period: bring the ring up to date under the old
			 * one, then start the new schedule now, with the current key as its
			 * first. Recomputing the epoch from created_s with the new period would
			 * jump it and drop both keys at once. */
			rotate(r);
			r->created_s = mono_s();
			r->epoch = 0;
		}
		r->rotate_s = rotate_s;
		pthread_mutex_unlock(&r->lock);
	}
	pthread_mutex_unlock(&registry_lock);
	return r;
}

int tickets_attach(SSL_CTX *ctx, const struct config *cfg, size_t index, struct cfg_errors *errs)
{
	const struct cfg_listener *l = &cfg->listeners[index];
	struct ring *r = NULL;
	char why[512];
	int ret = 0;

	pthread_once(&index_once, index_init);
	ENSURE(ring_index >= 0, ENOMEM);
	if (l->session_tickets.key_file) {
		ret = load_file(l->session_tickets.key_file, l->name, &r, why, sizeof(why));
		if (ret < 0) {
			config_errors_add(errs, "%s: listeners[%zu].session_tickets.key_file: %s",
					  cfg->path, index, why);
			goto cleanup;
		}
		log_info("listener %s: session tickets: %zu key%s from %s (key %zu encrypts)",
			 l->name, r->n, r->n == 1 ? "" : "s", l->session_tickets.key_file,
			 r->enc + 1);
	} else {
		r = generated_get(l->name, l->session_tickets.rotate_s);
		ENSURE(r, ENOMEM);
	}
	ENSURE(SSL_CTX_set_ex_data(ctx, ring_index, r) == 1, ENOMEM);
	r = NULL; /* the context owns a file ring from here */
	/* Tickets only: no server-side session cache, ever. */
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	SSL_CTX_clear_options(ctx, SSL_OP_NO_TICKET);
	SSL_CTX_set_timeout(ctx, (long)l->session_tickets.lifetime_s);
	ENSURE(SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, ticket_cb) == 1, ENOMEM);
cleanup:
	if (r && !r->generated)
		ring_free(r);
	if (ret == -ENOMEM)
		config_errors_add(errs, "%s: listeners[%zu].session_tickets: out of memory",
				  cfg->path, index);
	return ret;
}
