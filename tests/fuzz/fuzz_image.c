/*
 * fuzz_image.c: the container reader of src/image (images, backups and
 * packages) over an arbitrary file: open (prologue, trailer, header),
 * domain check, signature with the header's key, unlock with the fixed
 * domain key, then every record, whole and in pieces.
 *
 * In this build (FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION) the reader goes
 * on past a signature or MAC that does not verify, so mutated seeds (real
 * images and a package made by fuzz_make_seeds with the fixed keys) reach
 * the record parser; the data key must still unwrap.
 */
#include <stdlib.h>
#include <unistd.h>

#include "fuzz_common.h"
#include "image/image.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static crypto_sm2_key *vendor;
	if (!vendor)
		vendor = fuzz_key(FUZZ_KEY_VENDOR);
	int fd = fuzz_file(data, size);
	image_reader *r = NULL;
	if (image_reader_open(fd, &r) != 0)
		goto out;
	(void)image_reader_type(r);
	(void)image_reader_header(r);
	(void)image_reader_check_domain(r, "0000000000000000000000000000000000000000000000000000000000000000");
	int e;
	if (image_reader_type(r) == IMAGE_PACKAGE) {
		e = image_reader_verify_signature(r, vendor);
	} else {
		(void)image_reader_verify_signature(r, NULL);
		e = image_reader_unlock(r, fuzz_domain_key);
	}
	if (e != 0)
		goto out;
	/* Alternate whole records and records read in small pieces. */
	for (int i = 0; i < 10000; i++) {
		int tag;
		if (i & 1) {
			size_t len, n;
			uint8_t buf[7];
			if (image_reader_next_begin(r, &tag, &len) != 0 || tag == IMAGE_REC_END)
				break;
			do {
				if (image_reader_read(r, buf, sizeof(buf), &n) != 0)
					goto out;
			} while (n > 0);
		} else {
			uint8_t *value = NULL;
			size_t len = 0;
			if (image_reader_next(r, &tag, &value, &len) != 0)
				break;
			crypto_free_secret(value, len);
			if (tag == IMAGE_REC_END)
				break;
		}
	}
out:
	(void)image_reader_error(r);
	image_reader_free(r);
	close(fd);
	return 0;
}
