/*
 * chsm-pkg: builds, verifies and extracts upgrade packages (docs/packages.md).
 *
 *   chsm-pkg build --component chsm|vsm --version X.Y.Z --key VENDOR.pem
 *                  [--name-prefix DIR] FILE... -o PKG
 *   chsm-pkg verify --key VENDOR_PUB.pem PKG
 *   chsm-pkg extract --key VENDOR_PUB.pem PKG -C DIR
 *
 * Exit status: 0 success, 1 invalid package or failure (the Appendix A code
 * and a reason on stderr), 2 usage.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <libgen.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/util.h"
#include "crypto/crypto.h"
#include "pkg/pkg.h"

#define KEY_FILE_MAX (64 * 1024)

static void usage(FILE *f)
{
	fputs("usage:\n"
	      "  chsm-pkg build --component chsm|vsm --version X.Y.Z --key VENDOR.pem\n"
	      "                 [--name-prefix DIR] FILE... -o PKG\n"
	      "  chsm-pkg verify --key VENDOR_PUB.pem PKG\n"
	      "  chsm-pkg extract --key VENDOR_PUB.pem PKG -C DIR\n",
	      f);
}

/* Loads an SM2 key (private when want_private); the PEM text is wiped. */
static int load_key(const char *path, bool want_private, crypto_sm2_key **ret_key)
{
	char *pem = NULL;
	size_t len = 0;
	int r = chsm_read_file(path, KEY_FILE_MAX, &pem, &len);
	if (r < 0) {
		fprintf(stderr, "chsm-pkg: %s: %s\n", path, strerror(-r));
		return -1;
	}
	r = want_private ? crypto_sm2_load_private_pem(pem, len, ret_key)
			 : crypto_sm2_load_public_pem(pem, len, ret_key);
	crypto_free_secret(pem, len);
	if (r < 0) {
		fprintf(stderr, "chsm-pkg: %s: not an SM2 %s key (PEM)\n", path,
			want_private ? "private" : "public");
		return -1;
	}
	return 0;
}

static void print_info(const struct pkg_info *info)
{
	printf("component: %s\n", info->component);
	printf("version: %s\n", info->version);
	printf("files: %zu\n", info->nfiles);
	for (size_t i = 0; i < info->nfiles; i++)
		printf("  %04o %12llu %s %s\n", info->files[i].mode,
		       (unsigned long long)info->files[i].size, info->files[i].sm3, info->files[i].name);
}

/* The stored name of path: its base name, or its path relative to prefix. */
static const char *stored_name(const char *path, const char *prefix)
{
	if (!prefix) {
		const char *slash = strrchr(path, '/');
		return slash ? slash + 1 : path;
	}
	size_t n = strlen(prefix);
	while (n > 1 && prefix[n - 1] == '/')
		n--;
	if (strncmp(path, prefix, n) != 0 || path[n] != '/')
		return NULL;
	return path + n + 1;
}

static int fsync_parent(const char *path)
{
	char *copy = strdup(path);
	if (!copy)
		return -1;
	int fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	free(copy);
	if (fd < 0)
		return -1;
	int r = fsync(fd);
	close(fd);
	return r;
}

static int cmd_build(int argc, char **argv)
{
	const char *component = NULL, *version = NULL, *key_path = NULL, *prefix = NULL, *out = NULL;
	static const struct option opts[] = {
		{"component", required_argument, NULL, 'c'},
		{"version", required_argument, NULL, 'v'},
		{"key", required_argument, NULL, 'k'},
		{"name-prefix", required_argument, NULL, 'p'},
		{"output", required_argument, NULL, 'o'},
		{NULL, 0, NULL, 0},
	};
	int c;
	while ((c = getopt_long(argc, argv, "o:", opts, NULL)) != -1) {
		switch (c) {
		case 'c': component = optarg; break;
		case 'v': version = optarg; break;
		case 'k': key_path = optarg; break;
		case 'p': prefix = optarg; break;
		case 'o': out = optarg; break;
		default: usage(stderr); return 2;
		}
	}
	size_t n = (size_t)(argc - optind);
	if (!component || !version || !key_path || !out || n == 0) {
		usage(stderr);
		return 2;
	}
	if (pkg_component_check(component) < 0 || pkg_version_parse(version, NULL) < 0) {
		fprintf(stderr, "chsm-pkg: --component must be chsm or vsm, --version MAJOR.MINOR.PATCH\n");
		return 2;
	}
	struct pkg_input *in = calloc(n, sizeof(*in));
	if (!in)
		return 1;
	for (size_t i = 0; i < n; i++) {
		in[i].path = argv[optind + (int)i];
		in[i].name = stored_name(in[i].path, prefix);
		if (!in[i].name) {
			fprintf(stderr, "chsm-pkg: %s is not under --name-prefix %s\n", in[i].path, prefix);
			free(in);
			return 2;
		}
	}
	crypto_sm2_key *key = NULL;
	if (load_key(key_path, true, &key) < 0) {
		free(in);
		return 2;
	}
	int rc = 1;
	char *tmp = NULL;
	size_t tmplen = strlen(out) + sizeof(".tmp");
	if (!(tmp = malloc(tmplen)))
		goto done;
	snprintf(tmp, tmplen, "%s.tmp", out);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
	if (fd < 0) {
		fprintf(stderr, "chsm-pkg: %s: %s\n", tmp, strerror(errno));
		goto done;
	}
	char err[PKG_ERR_LEN] = "";
	int e = pkg_build(fd, component, version, key, in, n, err, sizeof(err));
	if (close(fd) < 0 && !e) {
		e = 5001;
		snprintf(err, sizeof(err), "%s: %s", tmp, strerror(errno));
	}
	if (!e && rename(tmp, out) < 0) {
		e = 5001;
		snprintf(err, sizeof(err), "%s: %s", out, strerror(errno));
	}
	if (e) {
		unlink(tmp);
		fprintf(stderr, "chsm-pkg: build failed: %d: %s\n", e, err);
		goto done;
	}
	if (fsync_parent(out) < 0) {
		fprintf(stderr, "chsm-pkg: %s: fsync of its folder: %s\n", out, strerror(errno));
		goto done;
	}
	printf("%s: %s %s, %zu file%s\n", out, component, version, n, n == 1 ? "" : "s");
	rc = 0;
done:
	crypto_sm2_key_free(key); /* wipes the private key */
	free(tmp);
	free(in);
	return rc;
}

static int cmd_check(int argc, char **argv, bool extract)
{
	const char *key_path = NULL, *dir = NULL;
	static const struct option opts[] = {
		{"key", required_argument, NULL, 'k'},
		{"directory", required_argument, NULL, 'C'},
		{NULL, 0, NULL, 0},
	};
	int c;
	while ((c = getopt_long(argc, argv, extract ? "C:" : "", opts, NULL)) != -1) {
		switch (c) {
		case 'k': key_path = optarg; break;
		case 'C': dir = optarg; break;
		default: usage(stderr); return 2;
		}
	}
	if (!key_path || argc - optind != 1 || (extract && !dir) || (!extract && dir)) {
		usage(stderr);
		return 2;
	}
	const char *path = argv[optind];
	crypto_sm2_key *key = NULL;
	if (load_key(key_path, false, &key) < 0)
		return 2;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		fprintf(stderr, "chsm-pkg: %s: %s\n", path, strerror(errno));
		crypto_sm2_key_free(key);
		return 1;
	}
	struct pkg_info info = {0};
	char err[PKG_ERR_LEN] = "";
	int e = extract ? pkg_extract(fd, key, dir, &info, err, sizeof(err))
			: pkg_verify(fd, key, &info, err, sizeof(err));
	close(fd);
	crypto_sm2_key_free(key);
	if (e) {
		printf("%s: invalid (%d: %s)\n", path, e, err);
		return 1;
	}
	printf("%s: valid\n", path);
	print_info(&info);
	if (extract)
		printf("extracted into %s\n", dir);
	pkg_info_free(&info);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	const char *cmd = argv[1];
	if (strcmp(cmd, "build") == 0)
		return cmd_build(argc - 1, argv + 1);
	if (strcmp(cmd, "verify") == 0)
		return cmd_check(argc - 1, argv + 1, false);
	if (strcmp(cmd, "extract") == 0)
		return cmd_check(argc - 1, argv + 1, true);
	if (strcmp(cmd, "-h") == 0 || strcmp(cmd, "--help") == 0) {
		usage(stdout);
		return 0;
	}
	usage(stderr);
	return 2;
}
