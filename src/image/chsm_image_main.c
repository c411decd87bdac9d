/*
 * chsm-image: looks at an image, backup or package without its secrets.
 *
 *   chsm-image inspect [--vendor-key PEM] FILE
 *       prints the prologue, the header, the sizes, and checks the layout
 *       and the signature (with the header's key, or with the vendor key
 *       given). Exit 0 when every check that can be made passes, 1 when one
 *       fails, 2 for usage. The MAC and the payload need the domain key and
 *       are not checked.
 *   chsm-image sm3 FILE
 *       prints the SM3 of the whole file (a request's "sm3" field).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/util.h"
#include "crypto/crypto.h"
#include "image/image.h"
#include "image/image_internal.h"

static void usage(FILE *f)
{
	fputs("usage:\n"
	      "  chsm-image inspect [--vendor-key PEM] FILE\n"
	      "  chsm-image sm3 FILE\n",
	      f);
}

static int cmd_sm3(const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		fprintf(stderr, "chsm-image: %s: %s\n", path, strerror(errno));
		return 1;
	}
	crypto_sm3_ctx *ctx = NULL;
	static uint8_t buf[IMAGE_BUF_LEN];
	uint8_t d[CRYPTO_SM3_LEN];
	char hex[CRYPTO_SM3_HEX_LEN + 1];
	int rc = 1;
	if (crypto_sm3_new(&ctx) < 0)
		goto out;
	for (;;) {
		ssize_t n = read(fd, buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			fprintf(stderr, "chsm-image: %s: %s\n", path, strerror(errno));
			goto out;
		}
		if (n == 0)
			break;
		if (crypto_sm3_update(ctx, buf, (size_t)n) < 0)
			goto out;
	}
	if (crypto_sm3_final(ctx, d) < 0)
		goto out;
	chsm_hex_encode(d, sizeof(d), hex);
	printf("%s\n", hex);
	rc = 0;
out:
	crypto_sm3_free(ctx);
	close(fd);
	return rc;
}

static void print_prologue(int fd)
{
	uint8_t p[IMAGE_PROLOGUE_LEN];
	ssize_t n = pread(fd, p, sizeof(p), 0);
	if (n != (ssize_t)sizeof(p)) {
		printf("prologue: truncated\n");
		return;
	}
	char magic[9];
	for (int i = 0; i < 8; i++)
		magic[i] = (p[i] >= 0x20 && p[i] < 0x7f) ? (char)p[i] : '?';
	magic[8] = '\0';
	const char *name = image_type_name(p[8]);
	printf("magic: %s\n", magic);
	printf("type: %u (%s)\n", p[8], name ? name : "unknown");
	printf("format version: %u\n", p[9]);
	printf("flags: %u\n", image_get_be16(p + 10));
	printf("header length: %" PRIu32 "\n", image_get_be32(p + 12));
}

static int load_key(const char *path, crypto_sm2_key **ret_key)
{
	char *pem = NULL;
	size_t len = 0;
	int r = chsm_read_file(path, 64 * 1024, &pem, &len);
	if (r < 0) {
		fprintf(stderr, "chsm-image: %s: %s\n", path, strerror(-r));
		return -1;
	}
	r = crypto_sm2_load_public_pem(pem, len, ret_key);
	free(pem);
	if (r < 0) {
		fprintf(stderr, "chsm-image: %s: not an SM2 public key (PEM)\n", path);
		return -1;
	}
	return 0;
}

static int cmd_inspect(const char *path, const char *vendor_key)
{
	crypto_sm2_key *key = NULL;
	if (vendor_key && load_key(vendor_key, &key) < 0)
		return 2;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		fprintf(stderr, "chsm-image: %s: %s\n", path, strerror(errno));
		crypto_sm2_key_free(key);
		return 1;
	}
	printf("file: %s\n", path);
	print_prologue(fd);
	image_reader *r = NULL;
	int rc = 1;
	char msg[IMAGE_ERROR_LEN];
	int e = image_reader_open_msg(fd, &r, msg, sizeof(msg));
	if (e) {
		printf("layout: invalid (%d: %s)\n", e, msg);
		goto out;
	}
	char *text = json_dumps(image_reader_header(r), JSON_INDENT(2) | JSON_SORT_KEYS);
	printf("header:\n%s\n", text ? text : "(unprintable)");
	free(text);
	uint64_t size = image_reader_size(r), payload = image_reader_payload_size(r);
	printf("size: %" PRIu64 "\n", size);
	printf("payload length: %" PRIu64 "\n", payload);
	printf("layout: valid\n");
	const char *fp = json_string_value(
		json_object_get(image_reader_header(r), "sourceDeviceFingerprint"));
	e = image_reader_verify_signature(r, key);
	if (e) {
		printf("signature: invalid (%d: %s)\n", e, image_reader_error(r));
		goto out;
	}
	printf("signature: valid (%s %s%s)\n",
	       image_reader_type(r) == IMAGE_PACKAGE ? "vendor" : "device", fp,
	       key ? ", the key given" : ", the key in the header");
	if (image_reader_type(r) != IMAGE_PACKAGE)
		printf("integrity: not checked (the MAC needs the domain key)\n");
	rc = 0;
out:
	image_reader_free(r);
	crypto_sm2_key_free(key);
	close(fd);
	return rc;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) {
		usage(stdout);
		return 0;
	}
	if (strcmp(argv[1], "sm3") == 0) {
		if (argc != 3) {
			usage(stderr);
			return 2;
		}
		return cmd_sm3(argv[2]);
	}
	if (strcmp(argv[1], "inspect") != 0) {
		usage(stderr);
		return 2;
	}
	static const struct option opts[] = {{"vendor-key", required_argument, NULL, 'k'},
					     {NULL, 0, NULL, 0}};
	const char *vendor_key = NULL;
	int c;
	optind = 2;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (c != 'k') {
			usage(stderr);
			return 2;
		}
		vendor_key = optarg;
	}
	if (optind != argc - 1) {
		usage(stderr);
		return 2;
	}
	return cmd_inspect(argv[optind], vendor_key);
}
