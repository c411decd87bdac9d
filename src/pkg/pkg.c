/*
 * pkg.c: upgrade packages over the image container (pkg.h). Verification
 * and extraction share one walk over the records (pkg_walk), so what is
 * extracted is exactly what was verified.
 */
#include "pkg/pkg.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <dirent.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/util.h"
#include "image/image.h"
#include "proto/codes.h"

#define PKG_BUF_LEN        (64 * 1024)
/* Largest FILE record: {name (255), size, mode, sm3} with JSON escapes. */
#define PKG_FILE_REC_MAX   2048

static int set_err(char *err, size_t errlen, int code, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static int set_err(char *err, size_t errlen, int code, const char *fmt, ...)
{
	if (err && errlen) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return code;
}

void pkg_info_free(struct pkg_info *info)
{
	if (!info)
		return;
	free(info->files);
	memset(info, 0, sizeof(*info));
}

int pkg_version_parse(const char *s, uint32_t ret_parts[3])
{
	uint32_t parts[3];
	if (!s || strlen(s) > PKG_VERSION_MAX_LEN)
		return -EINVAL;
	const char *p = s;
	for (int i = 0; i < 3; i++) {
		if (*p < '0' || *p > '9')
			return -EINVAL;
		if (*p == '0' && p[1] >= '0' && p[1] <= '9')
			return -EINVAL;
		uint32_t v = 0;
		while (*p >= '0' && *p <= '9') {
			v = v * 10 + (uint32_t)(*p - '0');
			if (v > PKG_VERSION_PART_MAX)
				return -EINVAL;
			p++;
		}
		parts[i] = v;
		if (i < 2 && *p++ != '.')
			return -EINVAL;
	}
	if (*p != '\0')
		return -EINVAL;
	if (ret_parts)
		memcpy(ret_parts, parts, sizeof(parts));
	return 0;
}

int pkg_version_cmp(const char *a, const char *b)
{
	uint32_t pa[3], pb[3];
	bool va = pkg_version_parse(a, pa) == 0, vb = pkg_version_parse(b, pb) == 0;
	if (!va || !vb)
		return (int)va - (int)vb;
	for (int i = 0; i < 3; i++)
		if (pa[i] != pb[i])
			return pa[i] < pb[i] ? -1 : 1;
	return 0;
}

int pkg_component_check(const char *component)
{
	if (component && (strcmp(component, "chsm") == 0 || strcmp(component, "vsm") == 0))
		return 0;
	return -EINVAL;
}

int pkg_name_check(const char *name)
{
	if (!name)
		return -EINVAL;
	size_t len = strlen(name);
	if (len == 0 || len > PKG_NAME_MAX)
		return -EINVAL;
	const char *c = name;
	for (;;) {
		const char *slash = strchr(c, '/');
		size_t n = slash ? (size_t)(slash - c) : strlen(c);
		if (n == 0 || (n == 1 && c[0] == '.') || (n == 2 && c[0] == '.' && c[1] == '.'))
			return -EINVAL;
		for (size_t i = 0; i < n; i++) {
			unsigned char ch = (unsigned char)c[i];
			if (ch < 0x20 || ch == 0x7f || ch == '\\')
				return -EINVAL;
		}
		if (!slash)
			return 0;
		c = slash + 1;
	}
}

unsigned pkg_mode_normalise(unsigned st_mode)
{
	return (st_mode & S_IXUSR) ? PKG_MODE_EXEC : PKG_MODE_DATA;
}

/* 0 when no name of files[0..n) equals another or is a directory of one. */
static int names_distinct(const struct pkg_file *files, size_t n, char *err, size_t errlen)
{
	for (size_t i = 0; i < n; i++)
		for (size_t j = 0; j < n; j++) {
			if (i == j)
				continue;
			const char *a = files[i].name, *b = files[j].name;
			size_t la = strlen(a);
			if (strcmp(a, b) == 0)
				return set_err(err, errlen, GMT_E_PACKAGE, "file name \"%s\" appears twice", a);
			if (strncmp(a, b, la) == 0 && b[la] == '/')
				return set_err(err, errlen, GMT_E_PACKAGE,
					       "file \"%s\" is also the directory of \"%s\"", a, b);
		}
	return 0;
}

static json_t *file_json(const struct pkg_file *f)
{
	return json_pack("{s:s, s:I, s:i, s:s}", "name", f->name, "size", (json_int_t)f->size,
			 "mode", (int)f->mode, "sm3", f->sm3);
}

static bool is_hex64(const char *s)
{
	if (!s || strlen(s) != CRYPTO_SM3_HEX_LEN)
		return false;
	for (const char *p = s; *p; p++)
		if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
			return false;
	return true;
}

/* Parses one {name, size, mode, sm3} object with no other member. */
static int file_from_json(const json_t *o, struct pkg_file *f, char *err, size_t errlen)
{
	if (!json_is_object(o) || json_object_size(o) != 4)
		return set_err(err, errlen, GMT_E_PACKAGE, "a file entry is not {name, size, mode, sm3}");
	const json_t *name = json_object_get(o, "name"), *size = json_object_get(o, "size"),
		     *mode = json_object_get(o, "mode"), *sm3 = json_object_get(o, "sm3");
	if (!json_is_string(name) || !json_is_integer(size) || !json_is_integer(mode) ||
	    !json_is_string(sm3))
		return set_err(err, errlen, GMT_E_PACKAGE, "a file entry is not {name, size, mode, sm3}");
	const char *n = json_string_value(name);
	if (strlen(n) != json_string_length(name) || pkg_name_check(n) < 0)
		return set_err(err, errlen, GMT_E_PACKAGE, "unsafe file name in the package");
	json_int_t sz = json_integer_value(size), md = json_integer_value(mode);
	if (sz < 0 || (uint64_t)sz > PKG_FILE_SIZE_MAX)
		return set_err(err, errlen, GMT_E_PACKAGE, "file \"%s\": size out of range", n);
	if (md != PKG_MODE_EXEC && md != PKG_MODE_DATA)
		return set_err(err, errlen, GMT_E_PACKAGE, "file \"%s\": mode not 0755 or 0644", n);
	if (!is_hex64(json_string_value(sm3)))
		return set_err(err, errlen, GMT_E_PACKAGE, "file \"%s\": sm3 not 64 lowercase hex digits", n);
	memset(f, 0, sizeof(*f));
	memcpy(f->name, n, strlen(n));
	f->size = (uint64_t)sz;
	f->mode = (unsigned)md;
	memcpy(f->sm3, json_string_value(sm3), CRYPTO_SM3_HEX_LEN);
	return 0;
}

/* Fills info from the header's contents object. */
static int info_from_contents(const json_t *c, struct pkg_info *info, char *err, size_t errlen)
{
	memset(info, 0, sizeof(*info));
	if (!json_is_object(c) || json_object_size(c) != 3)
		return set_err(err, errlen, GMT_E_PACKAGE, "header contents are not {component, version, files}");
	const char *comp = json_string_value(json_object_get(c, "component"));
	const char *ver = json_string_value(json_object_get(c, "version"));
	const json_t *files = json_object_get(c, "files");
	if (pkg_component_check(comp) < 0)
		return set_err(err, errlen, GMT_E_PACKAGE, "component is not \"chsm\" or \"vsm\"");
	if (pkg_version_parse(ver, NULL) < 0)
		return set_err(err, errlen, GMT_E_PACKAGE, "version is not MAJOR.MINOR.PATCH");
	if (!json_is_array(files) || json_array_size(files) == 0 ||
	    json_array_size(files) > PKG_FILES_MAX)
		return set_err(err, errlen, GMT_E_PACKAGE, "files is not a list of 1..%d entries", PKG_FILES_MAX);
	snprintf(info->component, sizeof(info->component), "%s", comp);
	snprintf(info->version, sizeof(info->version), "%s", ver);
	info->nfiles = json_array_size(files);
	info->files = calloc(info->nfiles, sizeof(*info->files));
	if (!info->files)
		return set_err(err, errlen, GMT_E_INTERNAL, "out of memory");
	int e;
	for (size_t i = 0; i < info->nfiles; i++)
		if ((e = file_from_json(json_array_get(files, i), &info->files[i], err, errlen))) {
			pkg_info_free(info);
			return e;
		}
	if ((e = names_distinct(info->files, info->nfiles, err, errlen))) {
		pkg_info_free(info);
		return e;
	}
	return 0;
}

/* ---- building ---- */

static int open_input(const char *path, struct stat *st, char *err, size_t errlen)
{
	/* O_NONBLOCK: a FIFO must not block the build before it is refused. */
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
	if (fd < 0 && errno == ELOOP)
		return -set_err(err, errlen, GMT_E_PACKAGE, "%s: a symbolic link", path);
	if (fd < 0)
		return -set_err(err, errlen, GMT_E_STORAGE, "%s: %s", path, strerror(errno));
	if (fstat(fd, st) < 0 || !S_ISREG(st->st_mode)) {
		close(fd);
		return -set_err(err, errlen, GMT_E_PACKAGE, "%s: not a regular file", path);
	}
	return fd;
}

/* Reads fd to its end (or, when w is set, exactly size bytes into DATA
 * records of w), and returns its SM3 in hex. */
static int stream_file(int fd, const char *path, uint64_t size, image_writer *w, uint8_t *buf,
		       char hex[CRYPTO_SM3_HEX_LEN + 1], uint64_t *ret_n, char *err, size_t errlen)
{
	crypto_sm3_ctx *ctx = NULL;
	uint8_t d[CRYPTO_SM3_LEN];
	uint64_t total = 0;
	size_t rec_left = 0;
	int e = 0;
	if (crypto_sm3_new(&ctx) < 0)
		return set_err(err, errlen, GMT_E_CRYPTO, "SM3 unavailable");
	for (;;) {
		size_t want = PKG_BUF_LEN;
		if (w) {
			if (total == size)
				break;
			if (size - total < want)
				want = (size_t)(size - total);
			if (rec_left && rec_left < want)
				want = rec_left;
		}
		ssize_t n = read(fd, buf, want);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			e = set_err(err, errlen, GMT_E_STORAGE, "%s: %s", path, strerror(errno));
			goto out;
		}
		if (n == 0) {
			if (w)
				e = set_err(err, errlen, GMT_E_STORAGE, "%s: changed while packaging", path);
			break;
		}
		if (w) {
			if (rec_left == 0) {
				uint64_t left = size - total;
				rec_left = left > IMAGE_RECORD_MAX ? IMAGE_RECORD_MAX : (size_t)left;
				if ((e = image_writer_record_begin(w, IMAGE_REC_DATA, rec_left)) ||
				    (e = image_writer_data(w, buf, (size_t)n))) {
					set_err(err, errlen, e, "%s", image_writer_error(w));
					goto out;
				}
			} else if ((e = image_writer_data(w, buf, (size_t)n))) {
				set_err(err, errlen, e, "%s", image_writer_error(w));
				goto out;
			}
			rec_left -= (size_t)n;
		}
		if (crypto_sm3_update(ctx, buf, (size_t)n) < 0) {
			e = set_err(err, errlen, GMT_E_CRYPTO, "SM3 failed");
			goto out;
		}
		total += (uint64_t)n;
	}
	if (e)
		goto out;
	if (crypto_sm3_final(ctx, d) < 0) {
		e = set_err(err, errlen, GMT_E_CRYPTO, "SM3 failed");
		goto out;
	}
	chsm_hex_encode(d, sizeof(d), hex);
	*ret_n = total;
out:
	crypto_sm3_free(ctx);
	return e;
}

int pkg_build(int out_fd, const char *component, const char *version,
	      const crypto_sm2_key *vendor_key, const struct pkg_input *inputs, size_t ninputs,
	      char *err, size_t errlen)
{
	if (out_fd < 0 || !vendor_key || !crypto_sm2_key_has_private(vendor_key) || (!inputs && ninputs))
		return set_err(err, errlen, GMT_E_INTERNAL, "misuse");
	if (pkg_component_check(component) < 0)
		return set_err(err, errlen, GMT_E_PACKAGE, "component must be \"chsm\" or \"vsm\"");
	if (pkg_version_parse(version, NULL) < 0)
		return set_err(err, errlen, GMT_E_PACKAGE,
			       "version must be MAJOR.MINOR.PATCH (decimal, no leading zeros, each <= %u)",
			       PKG_VERSION_PART_MAX);
	if (ninputs == 0 || ninputs > PKG_FILES_MAX)
		return set_err(err, errlen, GMT_E_PACKAGE, "a package has 1..%d files", PKG_FILES_MAX);
	int e = 0;
	image_writer *w = NULL;
	json_t *contents = NULL, *list = NULL;
	uint8_t *buf = malloc(PKG_BUF_LEN);
	struct pkg_file *files = calloc(ninputs, sizeof(*files));
	struct stat *sts = calloc(ninputs, sizeof(*sts));
	if (!buf || !files || !sts) {
		e = set_err(err, errlen, GMT_E_INTERNAL, "out of memory");
		goto out;
	}
	/* Pass 1: names, modes, sizes and SM3s for the header. */
	for (size_t i = 0; i < ninputs; i++) {
		const char *name = inputs[i].name;
		if (pkg_name_check(name) < 0) {
			e = set_err(err, errlen, GMT_E_PACKAGE, "unsafe file name \"%s\"", name ? name : "");
			goto out;
		}
		int fd = open_input(inputs[i].path, &sts[i], err, errlen);
		if (fd < 0) {
			e = -fd;
			goto out;
		}
		uint64_t n = 0;
		e = stream_file(fd, inputs[i].path, 0, NULL, buf, files[i].sm3, &n, err, errlen);
		close(fd);
		if (e)
			goto out;
		if (n != (uint64_t)sts[i].st_size || n > PKG_FILE_SIZE_MAX) {
			e = set_err(err, errlen, GMT_E_STORAGE, "%s: size changed or too large", inputs[i].path);
			goto out;
		}
		memcpy(files[i].name, name, strlen(name));
		files[i].size = n;
		files[i].mode = pkg_mode_normalise(sts[i].st_mode);
	}
	if ((e = names_distinct(files, ninputs, err, errlen)))
		goto out;
	list = json_array();
	for (size_t i = 0; list && i < ninputs; i++)
		if (json_array_append_new(list, file_json(&files[i])) < 0) {
			json_decref(list);
			list = NULL;
		}
	contents = list ? json_pack("{s:s, s:s, s:O}", "component", component, "version", version,
				    "files", list) : NULL;
	if (!contents) {
		e = set_err(err, errlen, GMT_E_INTERNAL, "out of memory");
		goto out;
	}
	struct image_signer signer = {.device_id = "vendor", .key = vendor_key};
	if ((e = image_writer_new(out_fd, IMAGE_PACKAGE, contents, &signer, NULL, NULL, &w))) {
		set_err(err, errlen, e, "cannot start the package");
		goto out;
	}
	/* Pass 2: each FILE record and its bytes; the SM3 must not change. */
	for (size_t i = 0; i < ninputs; i++) {
		struct stat st;
		int fd = open_input(inputs[i].path, &st, err, errlen);
		if (fd < 0) {
			e = -fd;
			goto out;
		}
		if (st.st_dev != sts[i].st_dev || st.st_ino != sts[i].st_ino ||
		    st.st_size != sts[i].st_size) {
			close(fd);
			e = set_err(err, errlen, GMT_E_STORAGE, "%s: changed while packaging", inputs[i].path);
			goto out;
		}
		json_t *fj = file_json(&files[i]);
		char *text = fj ? json_dumps(fj, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
		json_decref(fj);
		if (!text) {
			close(fd);
			e = set_err(err, errlen, GMT_E_INTERNAL, "out of memory");
			goto out;
		}
		e = image_writer_record(w, IMAGE_REC_FILE, text, strlen(text));
		free(text);
		if (e) {
			close(fd);
			set_err(err, errlen, e, "%s", image_writer_error(w));
			goto out;
		}
		char hex[CRYPTO_SM3_HEX_LEN + 1];
		uint64_t n = 0;
		e = stream_file(fd, inputs[i].path, files[i].size, w, buf, hex, &n, err, errlen);
		close(fd);
		if (e)
			goto out;
		if (strcmp(hex, files[i].sm3) != 0) {
			e = set_err(err, errlen, GMT_E_STORAGE, "%s: changed while packaging", inputs[i].path);
			goto out;
		}
	}
	uint64_t size;
	char sm3[CRYPTO_SM3_HEX_LEN + 1];
	if ((e = image_writer_finish(w, &size, sm3)))
		set_err(err, errlen, e, "%s", image_writer_error(w));
out:
	image_writer_free(w);
	json_decref(contents);
	json_decref(list);
	free(buf);
	free(files);
	free(sts);
	return e;
}

/* ---- verifying and extracting ---- */

/* Where pkg_walk puts each file's bytes (extraction); NULL to only check. */
struct pkg_sink {
	int (*open_file)(void *ctx, const struct pkg_file *f, char *err, size_t errlen);
	int (*write)(void *ctx, const void *data, size_t len, char *err, size_t errlen);
	int (*close_file)(void *ctx, char *err, size_t errlen);
	void *ctx;
};

/* Reads the current record's value (len bytes) into buf (cap > len). */
static int read_value(image_reader *r, uint8_t *buf, size_t len)
{
	size_t got = 0, n;
	int e;
	while (got < len) {
		if ((e = image_reader_read(r, buf + got, len - got, &n)))
			return e;
		if (n == 0)
			return GMT_E_IMAGE_INTEGRITY;
		got += n;
	}
	return 0;
}

static int walk_file(image_reader *r, const struct pkg_file *f, uint8_t *buf,
		     const struct pkg_sink *sink, char *err, size_t errlen)
{
	int tag, e;
	size_t len;
	if ((e = image_reader_next_begin(r, &tag, &len)))
		return set_err(err, errlen, e, "%s", image_reader_error(r));
	if (tag != IMAGE_REC_FILE)
		return set_err(err, errlen, GMT_E_PACKAGE, "file \"%s\" is listed but has no FILE record", f->name);
	if (len == 0 || len > PKG_FILE_REC_MAX)
		return set_err(err, errlen, GMT_E_PACKAGE, "FILE record of a wrong size");
	if ((e = read_value(r, buf, len)))
		return set_err(err, errlen, e, "%s", image_reader_error(r));
	json_error_t je;
	json_t *o = json_loadb((const char *)buf, len, JSON_REJECT_DUPLICATES, &je);
	struct pkg_file got;
	e = o ? file_from_json(o, &got, err, errlen)
	      : set_err(err, errlen, GMT_E_PACKAGE, "FILE record is not JSON");
	json_decref(o);
	if (e)
		return e;
	if (strcmp(got.name, f->name) != 0 || got.size != f->size || got.mode != f->mode ||
	    strcmp(got.sm3, f->sm3) != 0)
		return set_err(err, errlen, GMT_E_PACKAGE,
			       "FILE record \"%s\" differs from the header's entry \"%s\"", got.name, f->name);
	if (sink && (e = sink->open_file(sink->ctx, f, err, errlen)))
		return e;
	crypto_sm3_ctx *ctx = NULL;
	if (crypto_sm3_new(&ctx) < 0)
		return set_err(err, errlen, GMT_E_CRYPTO, "SM3 unavailable");
	uint64_t done = 0;
	while (done < f->size) {
		if ((e = image_reader_next_begin(r, &tag, &len))) {
			set_err(err, errlen, e, "%s", image_reader_error(r));
			goto out;
		}
		if (tag != IMAGE_REC_DATA || len == 0 || len > f->size - done) {
			e = set_err(err, errlen, GMT_E_PACKAGE, "file \"%s\": its data is not %llu bytes",
				    f->name, (unsigned long long)f->size);
			goto out;
		}
		for (;;) {
			size_t n;
			if ((e = image_reader_read(r, buf, PKG_BUF_LEN, &n))) {
				set_err(err, errlen, e, "%s", image_reader_error(r));
				goto out;
			}
			if (n == 0)
				break;
			if (crypto_sm3_update(ctx, buf, n) < 0) {
				e = set_err(err, errlen, GMT_E_CRYPTO, "SM3 failed");
				goto out;
			}
			if (sink && (e = sink->write(sink->ctx, buf, n, err, errlen)))
				goto out;
			done += n;
		}
	}
	uint8_t d[CRYPTO_SM3_LEN];
	char hex[CRYPTO_SM3_HEX_LEN + 1];
	if (crypto_sm3_final(ctx, d) < 0) {
		e = set_err(err, errlen, GMT_E_CRYPTO, "SM3 failed");
		goto out;
	}
	chsm_hex_encode(d, sizeof(d), hex);
	if (strcmp(hex, f->sm3) != 0) {
		e = set_err(err, errlen, GMT_E_PACKAGE, "file \"%s\": SM3 mismatch", f->name);
		goto out;
	}
	if (sink)
		e = sink->close_file(sink->ctx, err, errlen);
out:
	crypto_sm3_free(ctx);
	return e;
}

/* The one verification pass; with a sink, also the extraction. */
static int pkg_walk(int fd, const crypto_sm2_key *vendor_key, const struct pkg_sink *sink,
		    struct pkg_info *ret_info, char *err, size_t errlen)
{
	if (fd < 0 || !vendor_key)
		return set_err(err, errlen, GMT_E_INTERNAL, "misuse");
	image_reader *r = NULL;
	struct pkg_info info = {0};
	uint8_t *buf = NULL;
	int e = image_reader_open(fd, &r);
	if (e) {
		set_err(err, errlen, e, "not a valid container (layout, header or trailer)");
		goto out;
	}
	if (image_reader_type(r) != IMAGE_PACKAGE) {
		e = set_err(err, errlen, GMT_E_IMAGE_FORMAT, "a %s, not a package",
			    image_type_name(image_reader_type(r)));
		goto out;
	}
	if ((e = image_reader_verify_signature(r, vendor_key))) {
		set_err(err, errlen, e, "%s", image_reader_error(r));
		goto out;
	}
	if ((e = info_from_contents(json_object_get(image_reader_header(r), "contents"), &info, err,
				    errlen)))
		goto out;
	if (!(buf = malloc(PKG_BUF_LEN))) {
		e = set_err(err, errlen, GMT_E_INTERNAL, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < info.nfiles; i++)
		if ((e = walk_file(r, &info.files[i], buf, sink, err, errlen)))
			goto out;
	int tag;
	size_t len;
	if ((e = image_reader_next_begin(r, &tag, &len))) {
		set_err(err, errlen, e, "%s", image_reader_error(r));
		goto out;
	}
	if (tag != IMAGE_REC_END) {
		e = set_err(err, errlen, GMT_E_PACKAGE, "records after the listed files");
		goto out;
	}
	if (ret_info) {
		*ret_info = info;
		info.files = NULL;
	}
out:
	pkg_info_free(&info);
	free(buf);
	image_reader_free(r);
	return e;
}

int pkg_verify(int fd, const crypto_sm2_key *vendor_key, struct pkg_info *ret_info,
	       char *err, size_t errlen)
{
	return pkg_walk(fd, vendor_key, NULL, ret_info, err, errlen);
}

/* Extraction: what was created (relative names, in order) for the undo. */
struct extract_ctx {
	int dirfd;
	int fd;                 /* the file being written, or -1 */
	unsigned mode;
	char **created;
	bool *is_dir;
	size_t ncreated, cap;
};

static int note_created(struct extract_ctx *x, const char *name, size_t len, bool is_dir)
{
	if (x->ncreated == x->cap) {
		size_t cap = x->cap ? x->cap * 2 : 16;
		char **c = realloc(x->created, cap * sizeof(*c));
		if (!c)
			return -ENOMEM;
		x->created = c;
		bool *d = realloc(x->is_dir, cap * sizeof(*d));
		if (!d)
			return -ENOMEM;
		x->is_dir = d;
		x->cap = cap;
	}
	char *copy = strndup(name, len);
	if (!copy)
		return -ENOMEM;
	x->created[x->ncreated] = copy;
	x->is_dir[x->ncreated++] = is_dir;
	return 0;
}

static int x_open_file(void *ctx, const struct pkg_file *f, char *err, size_t errlen)
{
	struct extract_ctx *x = ctx;
	int parent = x->dirfd, e = 0;
	const char *c = f->name;
	char comp[PKG_NAME_MAX + 1];
	for (;;) {
		const char *slash = strchr(c, '/');
		size_t n = slash ? (size_t)(slash - c) : strlen(c);
		memcpy(comp, c, n);
		comp[n] = '\0';
		if (!slash) {
			x->fd = openat(parent, comp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
			if (x->fd < 0) {
				e = set_err(err, errlen, GMT_E_STORAGE, "%s: %s", f->name, strerror(errno));
				break;
			}
			x->mode = f->mode;
			if (note_created(x, f->name, strlen(f->name), false) < 0)
				e = set_err(err, errlen, GMT_E_INTERNAL, "out of memory");
			break;
		}
		if (mkdirat(parent, comp, 0755) == 0) {
			if (note_created(x, f->name, (size_t)(slash - f->name), true) < 0) {
				e = set_err(err, errlen, GMT_E_INTERNAL, "out of memory");
				break;
			}
		} else if (errno != EEXIST) {
			e = set_err(err, errlen, GMT_E_STORAGE, "%s: %s", f->name, strerror(errno));
			break;
		}
		int next = openat(parent, comp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (next < 0) {
			e = set_err(err, errlen, GMT_E_STORAGE, "%s: %s", f->name, strerror(errno));
			break;
		}
		if (parent != x->dirfd)
			close(parent);
		parent = next;
		c = slash + 1;
	}
	if (parent != x->dirfd)
		close(parent);
	return e;
}

static int x_write(void *ctx, const void *data, size_t len, char *err, size_t errlen)
{
	struct extract_ctx *x = ctx;
	const uint8_t *p = data;
	while (len) {
		ssize_t n = write(x->fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return set_err(err, errlen, GMT_E_STORAGE, "write: %s", strerror(errno));
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static int x_close_file(void *ctx, char *err, size_t errlen)
{
	struct extract_ctx *x = ctx;
	int e = 0;
	if (fchmod(x->fd, x->mode) < 0 || fsync(x->fd) < 0)
		e = set_err(err, errlen, GMT_E_STORAGE, "%s", strerror(errno));
	if (close(x->fd) < 0 && !e)
		e = set_err(err, errlen, GMT_E_STORAGE, "%s", strerror(errno));
	x->fd = -1;
	return e;
}

static bool dir_is_empty(int dirfd)
{
	int fd = dup(dirfd);
	if (fd < 0)
		return false;
	DIR *d = fdopendir(fd);
	if (!d) {
		close(fd);
		return false;
	}
	bool empty = true;
	struct dirent *de;
	while ((de = readdir(d)))
		if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0) {
			empty = false;
			break;
		}
	closedir(d);
	return empty;
}

int pkg_extract(int fd, const crypto_sm2_key *vendor_key, const char *dir,
		struct pkg_info *ret_info, char *err, size_t errlen)
{
	if (!dir)
		return set_err(err, errlen, GMT_E_INTERNAL, "misuse");
	int e = pkg_walk(fd, vendor_key, NULL, NULL, err, errlen);
	if (e)
		return e;
	struct extract_ctx x = {.dirfd = -1, .fd = -1};
	x.dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (x.dirfd < 0)
		return set_err(err, errlen, GMT_E_STORAGE, "%s: %s", dir, strerror(errno));
	if (!dir_is_empty(x.dirfd)) {
		close(x.dirfd);
		return set_err(err, errlen, GMT_E_STORAGE, "%s: not an empty directory", dir);
	}
	struct pkg_sink sink = {x_open_file, x_write, x_close_file, &x};
	/* The second pass checks everything again while writing: the file
	 * may have changed since the first. */
	e = pkg_walk(fd, vendor_key, &sink, ret_info, err, errlen);
	if (x.fd >= 0)
		close(x.fd);
	if (!e && fsync(x.dirfd) < 0)
		e = set_err(err, errlen, GMT_E_STORAGE, "%s: %s", dir, strerror(errno));
	for (size_t i = x.ncreated; i-- > 0;) {
		if (e)
			unlinkat(x.dirfd, x.created[i], x.is_dir[i] ? AT_REMOVEDIR : 0);
		free(x.created[i]);
	}
	if (e && ret_info)
		pkg_info_free(ret_info);
	free(x.created);
	free(x.is_dir);
	close(x.dirfd);
	return e;
}
