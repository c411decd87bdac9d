/*
 * fuzz_make_seeds.c: writes the seed inputs that must be made rather than
 * committed, with the project's own code and the fixed keys of
 * fuzz_common.c: signed and MACed requests (auth), real images, a backup
 * and a package (image, pkg), and VSM protocol exchanges (vsm_session,
 * vsmp).
 *
 *   fuzz_make_seeds OUTDIR     writes OUTDIR/<target>/<name>
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fuzz_common.h"
#include "image/image.h"
#include "pkg/pkg.h"
#include "proto/auth.h"
#include "vsmp/vsmp.h"

static const char *outdir;

static void die(const char *what)
{
	fprintf(stderr, "fuzz_make_seeds: %s\n", what);
	exit(1);
}

static void path_of(char *buf, size_t cap, const char *target, const char *name)
{
	snprintf(buf, cap, "%s/%s", outdir, target);
	if (mkdir(buf, 0755) < 0 && errno != EEXIST)
		die(buf);
	snprintf(buf, cap, "%s/%s/%s", outdir, target, name);
}

static void put(const char *target, const char *name, const void *data, size_t len)
{
	char path[512];
	path_of(path, sizeof(path), target, name);
	FILE *f = fopen(path, "wb");
	if (!f || fwrite(data, 1, len, f) != len || fclose(f) != 0)
		die(path);
}

/* ---- auth ---- */

static void auth_seed(const char *name, uint8_t flags, const struct gmt_signed_headers *h,
		      const char *method, const char *target, const char *body)
{
	char buf[2048];
	int n = snprintf(buf, sizeof(buf), "%c%s\n%s\n%s\n%s\n%s\n\n%s\n%s\n%s", flags, h->timestamp,
			 h->nonce, h->key_id, h->alg, h->signature, method, target, body);
	put("auth", name, buf, (size_t)n);
}

static void make_auth(void)
{
	crypto_sm2_key *platform = fuzz_key(FUZZ_KEY_PLATFORM);
	struct gmt_signed_headers h;
	const char *body = "{\"name\":\"t1\"}";
	if (gmt_sign_request(platform, "POST", "/gmt0088/v1/vsms", body, strlen(body),
			     1700000000000, &h) < 0)
		die("sign");
	auth_seed("sm2-post", 0, &h, "POST", "/gmt0088/v1/vsms", body);
	if (gmt_sign_request(platform, "GET", "/gmt0088/v1/chsm", NULL, 0, 1700000000001, &h) < 0)
		die("sign");
	auth_seed("sm2-get", 0, &h, "GET", "/gmt0088/v1/chsm", "");
	auth_seed("sm2-replay", 4, &h, "GET", "/gmt0088/v1/chsm", "");
	const char *key = "{\"publicKey\":\"x\"}";
	if (gmt_mac_enrollment_request(FUZZ_ENROLLMENT_CODE, "PUT", "/gmt0088/v1/auth/platform-key",
				       key, strlen(key), 1700000000002, &h) < 0)
		die("mac");
	auth_seed("hmac-enroll", 3, &h, "PUT", "/gmt0088/v1/auth/platform-key", key);
	auth_seed("hmac-closed", 1, &h, "PUT", "/gmt0088/v1/auth/platform-key", key);
	crypto_sm2_key_free(platform);
}

/* ---- images and packages ---- */

static int new_file(const char *target, const char *name, char *path, size_t cap)
{
	path_of(path, cap, target, name);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		die(path);
	return fd;
}

static void make_image(int type, const char *name)
{
	crypto_sm2_key *device = fuzz_key(FUZZ_KEY_DEVICE);
	struct image_signer signer = {.device_id = "fuzz-device", .key = device};
	char path[512], fp[CRYPTO_SM3_HEX_LEN + 1];
	memset(fp, 'a', CRYPTO_SM3_HEX_LEN);
	fp[CRYPTO_SM3_HEX_LEN] = '\0';
	int fd = new_file("image", name, path, sizeof(path));
	json_t *contents = json_pack("{s:s}", "vsmId", "vsm-1");
	image_writer *w = NULL;
	static const char vsm[] = "{\"vsmId\":\"vsm-1\",\"name\":\"one\"}";
	static const char key[] = "sign\0\0\0\0\1material-material-material-mat";
	static const char token[] = "token-1\0secret";
	static const char setting[] = "{\"name\":\"ntp\",\"value\":\"x\"}";
	uint64_t size;
	char sm3[CRYPTO_SM3_HEX_LEN + 1];
	if (image_writer_new(fd, type, contents, &signer, fuzz_domain_key, fp, &w) != 0 ||
	    image_writer_record(w, IMAGE_REC_VSM, vsm, sizeof(vsm) - 1) != 0 ||
	    image_writer_record(w, IMAGE_REC_TOKEN, token, sizeof(token) - 1) != 0 ||
	    image_writer_record(w, IMAGE_REC_KEY, key, sizeof(key) - 1) != 0 ||
	    (type == IMAGE_BACKUP &&
	     image_writer_record(w, IMAGE_REC_SETTING, setting, sizeof(setting) - 1) != 0) ||
	    image_writer_finish(w, &size, sm3) != 0)
		die("image");
	image_writer_free(w);
	json_decref(contents);
	close(fd);
	crypto_sm2_key_free(device);
}

static void make_package(void)
{
	crypto_sm2_key *vendor = fuzz_key(FUZZ_KEY_VENDOR);
	char dir[] = "/tmp/chsm-fuzz-seeds-XXXXXX", a[64], b[64], path[512], err[PKG_ERR_LEN];
	if (!mkdtemp(dir))
		die("mkdtemp");
	snprintf(a, sizeof(a), "%s/a", dir);
	snprintf(b, sizeof(b), "%s/b", dir);
	FILE *f = fopen(a, "w");
	if (!f || fputs("#!/bin/sh\necho upgraded\n", f) < 0 || fclose(f) != 0 || chmod(a, 0755) < 0)
		die(a);
	if (!(f = fopen(b, "w")) || fputs("data\n", f) < 0 || fclose(f) != 0)
		die(b);
	struct pkg_input in[] = {{a, "bin/chsmd"}, {b, "share/notes.txt"}};
	int fd = new_file("pkg", "package", path, sizeof(path));
	if (pkg_build(fd, "chsm", "1.2.3", vendor, in, 2, err, sizeof(err)) != 0)
		die(err);
	close(fd);
	/* The same package is a seed of the image reader too. */
	char copy[1100];
	snprintf(copy, sizeof(copy), "cp '%s' '%s/image/package'", path, outdir);
	if (system(copy) != 0)
		die("cp");
	unlink(a);
	unlink(b);
	rmdir(dir);
	crypto_sm2_key_free(vendor);
}

/* ---- the VSM protocol ---- */

struct seq {
	uint8_t buf[16384];
	size_t len;
	uint32_t id;
};

static void frame(struct seq *q, struct vsmp_writer *w)
{
	if (vsmp_writer_end(w) < 0 || q->len + w->len > sizeof(q->buf))
		die("frame");
	memcpy(q->buf + q->len, w->buf, w->len);
	q->len += w->len;
	vsmp_writer_free(w);
}

static struct vsmp_writer *begin(struct seq *q, uint16_t type)
{
	static struct vsmp_writer w;
	vsmp_writer_begin(&w, type, ++q->id, 0);
	return &w;
}

/* KEY_GENERATE of KEK 3, GEN_KEY_WITH_KEK under it (session key 1). */
static void kek_frames(struct seq *q)
{
	struct vsmp_writer *w = begin(q, VSMP_KEY_GENERATE);
	vsmp_put_u32(w, VSMP_KEY_KEK);
	vsmp_put_u32(w, 3);
	vsmp_put_bytes(w, NULL, 0);
	frame(q, w);
	w = begin(q, VSMP_GEN_KEY_WITH_KEK);
	vsmp_put_u32(w, 128);
	vsmp_put_u32(w, VSMP_SGD_SM4_ECB);
	vsmp_put_u32(w, 3);
	frame(q, w);
}

/* ENCRYPT (SM4-CBC, session key 1) of len bytes of data. */
static void encrypt_frame(struct seq *q, const uint8_t *data, size_t len)
{
	static const uint8_t iv[16] = {4, 5, 6};
	struct vsmp_writer *w = begin(q, VSMP_ENCRYPT);
	vsmp_put_u32(w, 1);
	vsmp_put_u32(w, VSMP_SGD_SM4_CBC);
	vsmp_put_bytes(w, iv, sizeof(iv));
	vsmp_put_bytes(w, data, len);
	frame(q, w);
}

static void make_vsm(void)
{
	static const uint8_t e[32] = {1, 2, 3};
	static const uint8_t block[32] = {4, 5, 6};
	struct seq q = {.len = 1, .buf = {1}};
	struct vsmp_writer *w;
	frame(&q, begin(&q, VSMP_DEVICE_INFO));
	w = begin(&q, VSMP_GENERATE_RANDOM);
	vsmp_put_u32(w, 16);
	frame(&q, w);
	w = begin(&q, VSMP_KEY_GENERATE);
	vsmp_put_u32(w, VSMP_KEY_SIGN);
	vsmp_put_u32(w, 1);
	vsmp_put_bytes(w, NULL, 0);
	frame(&q, w);
	w = begin(&q, VSMP_KEY_GENERATE);
	vsmp_put_u32(w, VSMP_KEY_ENC);
	vsmp_put_u32(w, 2);
	vsmp_put_bytes(w, "pw", 2);
	frame(&q, w);
	frame(&q, begin(&q, VSMP_KEY_LIST));
	w = begin(&q, VSMP_EXPORT_SIGN_PUBLIC);
	vsmp_put_u32(w, 1);
	frame(&q, w);
	w = begin(&q, VSMP_INTERNAL_SIGN);
	vsmp_put_u32(w, 1);
	vsmp_put_bytes(w, e, sizeof(e));
	frame(&q, w);
	w = begin(&q, VSMP_GET_ACCESS_RIGHT);
	vsmp_put_u32(w, 2);
	vsmp_put_bytes(w, "pw", 2);
	frame(&q, w);
	kek_frames(&q);
	encrypt_frame(&q, block, sizeof(block));
	w = begin(&q, VSMP_KEY_DESTROY);
	vsmp_put_u32(w, VSMP_KEY_SIGN);
	vsmp_put_u32(w, 1);
	frame(&q, w);
	put("vsm_session", "authenticated", q.buf, q.len);
	/* Authenticated: a request larger than the server's first input
	 * buffer, between small ones (the buffer grows and moves frames). */
	static uint8_t big[6000];
	struct seq g = {.len = 1, .buf = {1}};
	kek_frames(&g);
	frame(&g, begin(&g, VSMP_DEVICE_INFO));
	encrypt_frame(&g, big, sizeof(big));
	frame(&g, begin(&g, VSMP_DEVICE_INFO));
	put("vsm_session", "large", g.buf, g.len);
	/* Unauthenticated: an AUTH with a wrong proof, then a request. */
	struct seq p = {.len = 1, .buf = {0}};
	w = begin(&p, VSMP_AUTH);
	vsmp_put_bytes(w, "fuzz-token", 10);
	vsmp_put_bytes(w, block, 32);
	vsmp_put_bytes(w, e, 32);
	frame(&p, w);
	frame(&p, begin(&p, VSMP_DEVICE_INFO));
	put("vsm_session", "preauth", p.buf, p.len);
	/* The codec: the INTERNAL_SIGN frame read as u32, bytes. */
	struct seq c = {0};
	w = begin(&c, VSMP_INTERNAL_SIGN);
	vsmp_put_u32(w, 1);
	vsmp_put_bytes(w, e, sizeof(e));
	frame(&c, w);
	uint8_t codec[128];
	memcpy(codec, c.buf, VSMP_HEADER_LEN);
	codec[VSMP_HEADER_LEN] = 2;
	codec[VSMP_HEADER_LEN + 1] = 0;                 /* u32 */
	codec[VSMP_HEADER_LEN + 2] = 2 | (2 << 2);      /* bytes, max 32 */
	memcpy(codec + VSMP_HEADER_LEN + 3, c.buf + VSMP_HEADER_LEN, c.len - VSMP_HEADER_LEN);
	put("vsmp", "internal-sign", codec, c.len + 3);
}

int main(int argc, char **argv)
{
	if (argc != 2)
		die("usage: fuzz_make_seeds OUTDIR");
	outdir = argv[1];
	if (mkdir(outdir, 0755) < 0 && errno != EEXIST)
		die(outdir);
	make_auth();
	make_image(IMAGE_VSM, "vsm-image");
	make_image(IMAGE_BACKUP, "backup");
	make_package();
	make_vsm();
	return 0;
}
