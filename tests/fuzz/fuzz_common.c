/*
 * fuzz_common.c: see fuzz_common.h.
 */
#define _GNU_SOURCE
#include "fuzz_common.h"

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

const uint8_t fuzz_domain_key[32] = {
	0x64, 0x6f, 0x6d, 0x61, 0x69, 0x6e, 0x2d, 0x6b, 0x65, 0x79, 0x2d, 0x66, 0x6f, 0x72, 0x2d, 0x66,
	0x75, 0x7a, 0x7a, 0x69, 0x6e, 0x67, 0x2d, 0x6f, 0x6e, 0x6c, 0x79, 0x2d, 0x30, 0x30, 0x30, 0x31,
};

crypto_sm2_key *fuzz_key(enum fuzz_key which)
{
	/* Small scalars, far below the group order: valid private keys. */
	uint8_t d[CRYPTO_SM2_SCALAR_LEN] = {0};
	d[0] = 0x1f;
	d[CRYPTO_SM2_SCALAR_LEN - 1] = (uint8_t)(0x11 + which);
	crypto_sm2_key *k = NULL;
	if (crypto_sm2_from_private_scalar(d, &k) < 0)
		abort();
	return k;
}

int fuzz_file(const uint8_t *data, size_t size)
{
	int fd = memfd_create("fuzz-input", MFD_CLOEXEC);
	if (fd < 0)
		abort();
	for (size_t off = 0; off < size;) {
		ssize_t n = write(fd, data + off, size - off);
		if (n <= 0)
			abort();
		off += (size_t)n;
	}
	if (lseek(fd, 0, SEEK_SET) != 0)
		abort();
	return fd;
}

static char tmpdirs[4][256];
static int ntmpdirs;

static int remove_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)remove(path);
	return 0;
}

static void remove_tmpdirs(void)
{
	for (int i = 0; i < ntmpdirs; i++)
		(void)nftw(tmpdirs[i], remove_one, 16, FTW_DEPTH | FTW_PHYS);
}

const char *fuzz_tmpdir(const char *name)
{
	if (ntmpdirs == (int)(sizeof(tmpdirs) / sizeof(tmpdirs[0])))
		abort();
	char *dir = tmpdirs[ntmpdirs];
	const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
	snprintf(dir, sizeof(tmpdirs[0]), "%s/chsm-fuzz-%s-XXXXXX", base, name);
	if (!mkdtemp(dir))
		abort();
	if (ntmpdirs++ == 0)
		atexit(remove_tmpdirs);
	return dir;
}
