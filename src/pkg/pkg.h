/*
 * pkg.h: upgrade packages (docs/packages.md): building, verifying and
 * extracting the IMAGE_PACKAGE containers of src/image, signed by the
 * vendor's SM2 key.
 *
 * A package's header contents are {component, version, files: [{name,
 * size, mode, sm3}]}; its payload holds, for each file of that list and in
 * its order, one IMAGE_REC_FILE record (the same JSON object) followed by
 * the file's bytes in IMAGE_REC_DATA records (each 1..IMAGE_RECORD_MAX
 * bytes; none for an empty file), then the END record.
 *
 * Guarantees: pkg_verify and pkg_extract accept a package only when its
 * layout is valid, the vendor signature verifies, the header's list equals
 * the FILE records exactly, and each file's size and SM3 match. pkg_extract
 * writes nothing before a complete verification pass, writes only inside
 * dir, and removes everything it wrote when it fails. Memory is fixed
 * (64 KiB buffers) whatever the package size.
 *
 * Codes (PROFILE.md Appendix A, proto/codes.h):
 *   4001 the vendor signature does not verify (any changed byte)
 *   4003 not a container, not a package (another type), bad framing
 *   4006 a well-formed, signed package whose contents are invalid: header
 *        contents, names, modes, versions, list/record mismatch, size or
 *        SM3 mismatch (and, for the caller, a version not strictly newer)
 *   5001 I/O failure, 5002 crypto failure, 5000 internal / misuse
 * Functions return 0 or one of these, with a reason (never a secret) in
 * err when given.
 */
#ifndef CHSM_PKG_H
#define CHSM_PKG_H

#include <stddef.h>
#include <stdint.h>

#include "crypto/crypto.h"

/* Most files in one package: keeps the header (IMAGE_HEADER_MAX) small. */
#define PKG_FILES_MAX      256
/* Longest file name (relative path) in a package, in bytes. */
#define PKG_NAME_MAX       255
/* "999999.999999.999999" */
#define PKG_VERSION_MAX_LEN 20
/* Each of MAJOR, MINOR, PATCH is at most this. */
#define PKG_VERSION_PART_MAX 999999u
/* Largest file in a package (64 GiB): a sanity bound, not a memory one. */
#define PKG_FILE_SIZE_MAX  (UINT64_C(64) << 30)
/* The two permission sets a packaged file can have. */
#define PKG_MODE_EXEC      0755
#define PKG_MODE_DATA      0644
#define PKG_ERR_LEN        256

struct pkg_file {
	char name[PKG_NAME_MAX + 1];
	uint64_t size;
	unsigned mode;                       /* PKG_MODE_EXEC or PKG_MODE_DATA */
	char sm3[CRYPTO_SM3_HEX_LEN + 1];    /* lowercase hex */
};

struct pkg_info {
	char component[8];                   /* "chsm" or "vsm" */
	char version[PKG_VERSION_MAX_LEN + 1];
	size_t nfiles;
	struct pkg_file *files;              /* malloc'ed; pkg_info_free */
};
/* Frees info->files and zeroes info. Accepts NULL. */
void pkg_info_free(struct pkg_info *info);

/* 0 when s is MAJOR.MINOR.PATCH in decimal, no leading zeros (except "0"),
 * each part <= PKG_VERSION_PART_MAX, nothing else; then *ret_parts holds
 * the three numbers (when not NULL). -EINVAL otherwise. */
int pkg_version_parse(const char *s, uint32_t ret_parts[3]);
/* Compares two versions numerically, part by part (1.2.10 > 1.2.9):
 * negative, 0 or positive as a is older than, equal to or newer than b.
 * An invalid version sorts before every valid one; two invalid ones are
 * equal. "Strictly newer" (the 4006 rule) is pkg_version_cmp(new, cur) > 0. */
int pkg_version_cmp(const char *a, const char *b);
/* 0 when component is "chsm" or "vsm", -EINVAL otherwise. */
int pkg_component_check(const char *component);
/* 0 when name is a safe relative file name: 1..PKG_NAME_MAX bytes,
 * components separated by single '/', none empty, "." or "..", no leading
 * or trailing '/', no control character (< 0x20, 0x7f) and no backslash.
 * -EINVAL otherwise. */
int pkg_name_check(const char *name);
/* The packaged mode of a file with st_mode bits: PKG_MODE_EXEC when the
 * owner may execute it, else PKG_MODE_DATA. */
unsigned pkg_mode_normalise(unsigned st_mode);

/* One file to package: read from path, stored as name. */
struct pkg_input {
	const char *path;
	const char *name;
};

/* Writes a package of component at version with the inputs, in their
 * order, to out_fd (a new empty file; fsynced, not closed), signed with
 * vendor_key (a key pair, borrowed). Each input must be a regular file
 * (not a symlink), with a valid, unique name, none being the directory of
 * another. Files are read twice (SM3 for the header, then streamed); a
 * file that changes in between is 5001. 4006 for bad arguments. */
int pkg_build(int out_fd, const char *component, const char *version,
	      const crypto_sm2_key *vendor_key, const struct pkg_input *inputs, size_t ninputs,
	      char *err, size_t errlen);

/* Verifies the package in fd (a regular file, read with pread) with the
 * vendor public key; on success fills *ret_info (when not NULL; free it
 * with pkg_info_free). */
int pkg_verify(int fd, const crypto_sm2_key *vendor_key, struct pkg_info *ret_info,
	       char *err, size_t errlen);

/* Verifies the package (a complete pass), then writes its files into dir,
 * which must be an existing, empty directory (not a symlink): files are
 * created with O_EXCL|O_NOFOLLOW and their modes, subdirectories 0755,
 * each file fsynced. Each file's SM3 is checked again while it is written;
 * on any failure everything written is removed and dir is left empty.
 * *ret_info as for pkg_verify. */
int pkg_extract(int fd, const crypto_sm2_key *vendor_key, const char *dir,
		struct pkg_info *ret_info, char *err, size_t errlen);

#endif
