/*
 * fuzz_pkg.c: the package verifier of src/pkg over an arbitrary file,
 * with the fixed vendor key: pkg_verify (layout, signature, header
 * contents, names, modes, versions, the list against the FILE records,
 * sizes and SM3). In this build the signature check lets a mutated seed
 * through (see fuzz_image.c), so the contents checks are reached.
 * pkg_extract is not driven: it writes files, and it runs pkg_verify's
 * pass first.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fuzz_common.h"
#include "pkg/pkg.h"
#include "proto/codes.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static crypto_sm2_key *vendor;
	if (!vendor)
		vendor = fuzz_key(FUZZ_KEY_VENDOR);
	int fd = fuzz_file(data, size);
	struct pkg_info info;
	char err[PKG_ERR_LEN];
	memset(&info, 0, sizeof(info));
	int rc = pkg_verify(fd, vendor, &info, err, sizeof(err));
	if (rc != 0 && rc != GMT_E_IMAGE_SIGNATURE && rc != GMT_E_IMAGE_FORMAT &&
	    rc != GMT_E_IMAGE_INTEGRITY && rc != 4006)
		abort(); /* a file in memory has no I/O or crypto failure */
	if (rc == 0) {
		/* What was accepted obeys the documented rules. */
		if (pkg_component_check(info.component) != 0 ||
		    pkg_version_parse(info.version, NULL) != 0 || info.nfiles > PKG_FILES_MAX)
			abort();
		for (size_t i = 0; i < info.nfiles; i++)
			if (pkg_name_check(info.files[i].name) != 0 ||
			    (info.files[i].mode != PKG_MODE_EXEC && info.files[i].mode != PKG_MODE_DATA))
				abort();
	}
	pkg_info_free(&info);
	close(fd);
	return 0;
}
