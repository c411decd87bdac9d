/*
 * keys.c: platform key files: generating a key pair and reading the public
 * half of a key file.
 *
 * Guarantees: a generated key is written only to a file this call creates
 * (O_EXCL: an existing file, or a symbolic link planted in its place, is
 * never followed or overwritten), with mode 0600, synced to disk; a failed
 * write leaves no file behind. Private key bytes are wiped from memory
 * after use.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "client/client_internal.h"
#include "common/util.h"

/* Writes all of data to fd, retrying short writes. */
static int write_all(int fd, const char *data, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, data, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		data += n;
		len -= (size_t)n;
	}
	return 0;
}

int chsm_client_keygen(const char *out_path, char ret_fingerprint[CHSM_CLIENT_FINGERPRINT_LEN + 1])
{
	crypto_sm2_key *key = NULL;
	char *pem = NULL, fp[CRYPTO_SM3_HEX_LEN + 1];
	size_t pem_len = 0;
	int fd = -1, r;
	bool created = false;

	if (!out_path || !*out_path)
		return -EINVAL;
	r = crypto_sm2_generate(&key);
	if (r < 0)
		goto out;
	r = crypto_sm2_private_pem(key, &pem, &pem_len);
	if (r < 0)
		goto out;
	r = crypto_sm2_fingerprint(key, fp);
	if (r < 0)
		goto out;
	fd = open(out_path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0) {
		r = -errno;
		goto out;
	}
	created = true;
	if (fchmod(fd, 0600) < 0) { /* exact mode, whatever the umask */
		r = -errno;
		goto out;
	}
	r = write_all(fd, pem, pem_len);
	if (r < 0)
		goto out;
	if (fsync(fd) < 0) {
		r = -errno;
		goto out;
	}
	if (ret_fingerprint)
		memcpy(ret_fingerprint, fp, sizeof(fp));
out:
	if (fd >= 0 && close(fd) < 0 && r == 0)
		r = -errno;
	if (r < 0 && created)
		unlink(out_path);
	crypto_free_secret(pem, pem_len);
	crypto_sm2_key_free(key);
	return r;
}

int chsm_client_key_info(const char *path, char **ret_public_pem,
			 char ret_fingerprint[CHSM_CLIENT_FINGERPRINT_LEN + 1])
{
	crypto_sm2_key *key = NULL;
	char *file = NULL, *pub = NULL, fp[CRYPTO_SM3_HEX_LEN + 1];
	size_t file_len = 0, pub_len = 0;
	int r;

	if (!path)
		return -EINVAL;
	r = chsm_read_file(path, CHSM_CLIENT_MAX_KEY_FILE, &file, &file_len);
	if (r < 0)
		return r;
	/* A public key file, else a key pair (whose bytes are secret). */
	if (crypto_sm2_load_public_pem(file, file_len, &key) < 0 &&
	    crypto_sm2_load_private_pem(file, file_len, &key) < 0) {
		r = -EINVAL;
		goto out;
	}
	r = crypto_sm2_fingerprint(key, fp);
	if (r < 0)
		goto out;
	if (ret_public_pem) {
		r = crypto_sm2_public_pem(key, &pub, &pub_len);
		if (r < 0)
			goto out;
		*ret_public_pem = pub;
	}
	if (ret_fingerprint)
		memcpy(ret_fingerprint, fp, sizeof(fp));
out:
	crypto_free_secret(file, file_len);
	crypto_sm2_key_free(key);
	return r;
}
