/* reload_cert — cert-set: new PEM texts for a configured certificate are checked, written over
 * the files the config names (a temporary file in the same directory, then rename(2), so a reader
 * sees the old file or the new one, never half of one), and the state is rebuilt; when anything
 * fails the old files are put back the same way. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "certstore.h"
#include "log.h"
#include "reload.h"

#define PEM_MAX (1u << 20)

/* What a file held before cert-set, to put back. */
struct saved {
	const char *path;
	char *data; /* NULL: the file did not exist */
	size_t len;
	struct stat st;
};

static int read_all(const char *path, struct saved *s)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC), ret = 0;
	ssize_t n;

	s->path = path;
	if (fd < 0)
		return errno == ENOENT ? 0 : -errno;
	ENSURE(fstat(fd, &s->st) == 0, errno);
	ENSURE(S_ISREG(s->st.st_mode) && s->st.st_size <= PEM_MAX, EINVAL);
	s->data = malloc((size_t)s->st.st_size + 1);
	ENSURE(s->data, ENOMEM);
	while (s->len < (size_t)s->st.st_size) {
		n = read(fd, s->data + s->len, (size_t)s->st.st_size - s->len);
		ENSURE(n >= 0 || errno == EINTR, errno);
		if (n == 0)
			break;
		if (n > 0)
			s->len += (size_t)n;
	}
cleanup:
	close(fd);
	return ret;
}

/* Writes a temporary file next to path with the mode and owner of like (or mode when like is
 * NULL), then fsyncs it. Returns 0 with its name in tmp (PATH_MAX), or a negative errno. */
static int write_tmp(const char *path, const char *a, const char *b, const struct stat *like,
		     mode_t mode, char *tmp, size_t tmplen)
{
	const char *parts[2] = { a, b };
	int fd, ret = 0;

	snprintf(tmp, tmplen, "%s.ktlsd-XXXXXX", path);
	fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0) {
		tmp[0] = '\0';
		return -errno;
	}
	ENSURE(fchmod(fd, like ? like->st_mode & 07777 : mode) == 0, errno);
	if (like && fchown(fd, like->st_uid, like->st_gid) < 0)
		log_warn("cert-set: %s: cannot keep the owner of %s: %s", tmp, path,
			 strerror(errno));
	for (int i = 0; i < 2 && parts[i]; i++) {
		size_t len = strlen(parts[i]), off = 0;

		while (off < len) {
			ssize_t n = write(fd, parts[i] + off, len - off);

			ENSURE(n >= 0 || errno == EINTR, errno);
			if (n > 0)
				off += (size_t)n;
		}
		if (len && parts[i][len - 1] != '\n')
			ENSURE(write(fd, "\n", 1) == 1, EIO);
	}
	ENSURE(fsync(fd) == 0, errno);
cleanup:
	close(fd);
	if (ret < 0) {
		unlink(tmp);
		tmp[0] = '\0';
	}
	return ret;
}

static void restore(const struct saved *s)
{
	char tmp[4096];
	char *data = s->data;

	if (!s->data) {
		if (unlink(s->path) < 0 && errno != ENOENT)
			log_err("cert-set: cannot remove %s: %s", s->path, strerror(errno));
		return;
	}
	data[s->len] = '\0';
	if (write_tmp(s->path, data, NULL, &s->st, 0600, tmp, sizeof(tmp)) < 0 ||
	    rename(tmp, s->path) < 0) {
		log_err("cert-set: cannot put back %s: %s", s->path, strerror(errno));
		if (tmp[0])
			unlink(tmp);
	}
}

/* Replaces text in err: the temporary file's name becomes what the operator knows it by. */
static void rename_in(char *err, size_t len, const char *tmp, const char *what)
{
	char *p = tmp[0] ? strstr(err, tmp) : NULL;
	char out[1024];

	if (!p)
		return;
	snprintf(out, sizeof(out), "%.*s%s%s", (int)(p - err), err, what, p + strlen(tmp));
	snprintf(err, len, "%s", out);
}

/* Checks the new pair as a certificate file would be checked at load, plus its domains. */
static int check_new(const struct cfg_cert *cc, const char *tcert, const char *tkey,
		     struct reload_report *rep)
{
	struct certstore_cert *c = NULL;
	char err[1024];
	int ret = certstore_cert_load(tcert, tkey, &c, err, sizeof(err));

	if (ret == 0)
		ret = certstore_cert_check_domains(c, (const char *const *)cc->domains,
						   cc->n_domains, err, sizeof(err));
	if (ret < 0) {
		rename_in(err, sizeof(err), tcert, "the new certificate");
		rename_in(err, sizeof(err), tkey, "the new key");
		config_errors_add(&rep->problems, "cert-set %s: %s", cc->name, err);
	}
	certstore_cert_free(c);
	return ret;
}

static int set_locked(struct reload *r, const struct cfg_cert *cc, const char *cert_pem,
		      const char *key_pem, struct reload_report *rep)
{
	bool one_file = strcmp(cc->cert, cc->key) == 0;
	struct saved old_cert = { 0 }, old_key = { 0 };
	char tcert[4096] = "", tkey[4096] = "";
	int ret = 0;

	/* A certificate file is often world-readable: never let a key slip into one. */
	if (!one_file && strstr(cert_pem, "PRIVATE KEY-----")) {
		config_errors_add(&rep->problems,
				  "cert-set %s: the certificate text holds a private "
				  "key; send the key as \"key\"",
				  cc->name);
		ENSURE(false, EINVAL);
	}
	GUARD(read_all(cc->cert, &old_cert));
	if (!one_file)
		GUARD(read_all(cc->key, &old_key));
	GUARD(write_tmp(cc->cert, cert_pem, one_file ? key_pem : NULL,
			old_cert.data ? &old_cert.st : NULL, one_file ? 0600 : 0644, tcert,
			sizeof(tcert)));
	if (!one_file)
		GUARD(write_tmp(cc->key, key_pem, NULL, old_key.data ? &old_key.st : NULL, 0600,
				tkey, sizeof(tkey)));
	GUARD(check_new(cc, tcert, one_file ? tcert : tkey, rep));
	ENSURE(rename(tcert, cc->cert) == 0, errno);
	tcert[0] = '\0';
	if (!one_file && rename(tkey, cc->key) < 0) {
		ret = -errno;
		restore(&old_cert);
		goto cleanup;
	}
	tkey[0] = '\0';
	ret = reload_locked(r, rep);
	if (ret < 0) {
		restore(&old_cert);
		if (!one_file)
			restore(&old_key);
	}
cleanup:
	if (ret < 0 && rep->problems.n == 0)
		config_errors_add(&rep->problems, "cert-set %s: %s or %s: %s", cc->name, cc->cert,
				  cc->key, strerror(-ret));
	if (tcert[0])
		unlink(tcert);
	if (tkey[0])
		unlink(tkey);
	free(old_cert.data);
	free(old_key.data);
	return ret;
}

int reload_cert_set(struct reload *r, const char *name, const char *cert_pem, const char *key_pem,
		    struct reload_report *rep)
{
	const struct config *cfg;
	struct cfg_cert cc = { 0 };
	char *undeleted = NULL;
	int ret = 0;

	pthread_mutex_lock(&r->lock);
	cfg = r->st->cfg;
	for (size_t i = 0; i < cfg->n_certs; i++)
		if (strcmp(cfg->certs[i].name, name) == 0)
			cc = cfg->certs[i];
	if (!cc.name) {
		config_errors_add(&rep->problems,
				  "no certificate named \"%s\" in the running config (cert-set "
				  "replaces the files of a configured certificate)",
				  name);
		ENSURE(false, ENOENT);
	}
	/* The strings of cc belong to the current state, which reload_locked may replace. */
	cc.name = strdup(cc.name);
	cc.cert = strdup(cc.cert);
	cc.key = strdup(cc.key);
	ENSURE(cc.name && cc.cert && cc.key, ENOMEM);
	for (size_t i = 0; i < r->n_deleted; i++) {
		if (strcmp(r->deleted[i], name) == 0) {
			undeleted = r->deleted[i];
			r->deleted[i] = r->deleted[--r->n_deleted];
			break;
		}
	}
	ret = set_locked(r, &cc, cert_pem, key_pem, rep);
	if (ret < 0 && undeleted) {
		r->deleted[r->n_deleted++] = undeleted; /* the array kept its room */
		undeleted = NULL;
	}
cleanup:
	pthread_mutex_unlock(&r->lock);
	free(undeleted);
	free(cc.name);
	free(cc.cert);
	free(cc.key);
	reload_log("cert-set", ret, rep);
	return ret;
}
