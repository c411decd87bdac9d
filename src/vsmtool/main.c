/*
 * main.c: vsmtool, the tenant's command-line tool for a VSM, built on the
 * SDF library (include/openchsm/sdf.h). Usage: docs/sdf.md#vsmtool.
 *
 * Contract with scripts: results go to stdout (hex, PEM, base64 or plain
 * lines), nothing else does. Exit status 0 on success; 1 when the library
 * or the VSM returns an SDR code, printed to stderr as "NAME (0xHEX)";
 * 2 for usage and input errors (bad arguments, unreadable files), with the
 * relevant usage text. Passwords are read from files, never from the
 * command line, and wiped after use.
 */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/util.h"
#include "crypto/crypto.h"
#include "openchsm/sdf.h"
#include "sdf/sdf_internal.h"

enum { EXIT_OK = 0, EXIT_SDR = 1, EXIT_USAGE = 2 };

#define MAX_SIG_FILE   4096
#define HASH_CHUNK     (64 * 1024)

static const char usage_main[] =
	"usage: vsmtool [--config FILE] COMMAND [ARGS]\n"
	"\n"
	"The VSM and token come from FILE, or from OPENCHSM_SDF_CONFIG, or from\n"
	"OPENCHSM_SDF_ENDPOINT, OPENCHSM_SDF_TOKEN_ID and OPENCHSM_SDF_TOKEN_SECRET_FILE.\n"
	"\n"
	"commands:\n"
	"  info                                   device information\n"
	"  random N                               N random bytes (1..65536), hex\n"
	"  key gen sign|enc|kek INDEX [--password-file F]\n"
	"  key list\n"
	"  key destroy sign|enc|kek INDEX\n"
	"  key set-password sign|enc INDEX --password-file F\n"
	"  key export sign|enc INDEX              public key, SubjectPublicKeyInfo PEM\n"
	"  sign INDEX --in FILE [--id ID] [--password-file F] [--out FILE]\n"
	"  verify INDEX --in FILE --sig FILE [--id ID]\n"
	"\n"
	"Exit status: 0 ok, 1 SDR error, 2 usage or input error.\n";
static const char usage_info[] = "usage: vsmtool info\n";
static const char usage_random[] = "usage: vsmtool random N   (1..65536; prints hex)\n";
static const char usage_key[] =
	"usage: vsmtool key gen sign|enc|kek INDEX [--password-file F]\n"
	"       vsmtool key list\n"
	"       vsmtool key destroy sign|enc|kek INDEX\n"
	"       vsmtool key set-password sign|enc INDEX --password-file F\n"
	"       vsmtool key export sign|enc INDEX\n"
	"A password file holds up to 64 bytes; one final newline is ignored.\n"
	"set-password with an empty file removes the password.\n";
static const char usage_sign[] =
	"usage: vsmtool sign INDEX --in FILE [--id ID] [--password-file F] [--out FILE]\n"
	"Signs SM3(Z || FILE) with the signing key INDEX (Z for ID, default\n"
	"1234567812345678). Prints the DER signature in base64, or writes DER to --out.\n";
static const char usage_verify[] =
	"usage: vsmtool verify INDEX --in FILE --sig FILE [--id ID]\n"
	"Verifies a signature (DER or base64) of FILE with the signing key INDEX.\n";

/* Parsed command line. */
struct args {
	const char *config;
	const char *pos[4];
	int npos;
	const char *password_file, *in, *out, *sig, *id;
	bool help;
};

static int usage(const char *text)
{
	fputs(text, stderr);
	return EXIT_USAGE;
}

static int sdr_fail(int rc)
{
	fprintf(stderr, "vsmtool: %s (0x%08X)\n", SDFX_ErrorName(rc), (unsigned)rc);
	return EXIT_SDR;
}

static int parse_args(int argc, char **argv, struct args *a)
{
	memset(a, 0, sizeof(*a));
	static const struct {
		const char *name;
		size_t off;
	} opts[] = {
		{"--config", offsetof(struct args, config)},
		{"--password-file", offsetof(struct args, password_file)},
		{"--in", offsetof(struct args, in)},
		{"--out", offsetof(struct args, out)},
		{"--sig", offsetof(struct args, sig)},
		{"--id", offsetof(struct args, id)},
	};
	for (int i = 1; i < argc; i++) {
		const char *s = argv[i];
		if (strcmp(s, "--help") == 0 || strcmp(s, "-h") == 0) {
			a->help = true;
			continue;
		}
		if (s[0] == '-' && s[1] != '\0') {
			size_t k;
			for (k = 0; k < sizeof(opts) / sizeof(opts[0]); k++)
				if (strcmp(s, opts[k].name) == 0)
					break;
			if (k == sizeof(opts) / sizeof(opts[0]) || i + 1 >= argc) {
				fprintf(stderr, "vsmtool: bad option %s\n", s);
				return -EINVAL;
			}
			const char **slot = (const char **)((char *)a + opts[k].off);
			if (*slot) {
				fprintf(stderr, "vsmtool: %s given twice\n", s);
				return -EINVAL;
			}
			*slot = argv[++i];
			continue;
		}
		if (a->npos == (int)(sizeof(a->pos) / sizeof(a->pos[0]))) {
			fprintf(stderr, "vsmtool: too many arguments\n");
			return -EINVAL;
		}
		a->pos[a->npos++] = s;
	}
	return 0;
}

/* True when only the options named in allowed (a string of letters:
 * p password-file, i in, o out, s sig, d id) were given. */
static bool only_options(const struct args *a, const char *allowed)
{
	return (!a->password_file || strchr(allowed, 'p')) && (!a->in || strchr(allowed, 'i')) &&
	       (!a->out || strchr(allowed, 'o')) && (!a->sig || strchr(allowed, 's')) &&
	       (!a->id || strchr(allowed, 'd'));
}

static int parse_index(const char *s, unsigned int *ret)
{
	uint64_t v;
	if (!s || chsm_parse_u64(s, 0xffffffffu, &v) < 0 || v == 0)
		return -EINVAL;
	*ret = (unsigned int)v;
	return 0;
}

static int parse_key_type(const char *s, bool allow_kek, unsigned int *ret)
{
	if (!s)
		return -EINVAL;
	if (strcmp(s, "sign") == 0)
		*ret = SDFX_KEY_SIGN;
	else if (strcmp(s, "enc") == 0)
		*ret = SDFX_KEY_ENC;
	else if (allow_kek && strcmp(s, "kek") == 0)
		*ret = SDFX_KEY_KEK;
	else
		return -EINVAL;
	return 0;
}

/* Reads a password file (at most 64 bytes after dropping one final "\n" or
 * "\r\n") into a NUL-terminated secret buffer of 65 bytes. */
static int read_password(const char *path, char out[65])
{
	char *data = NULL;
	size_t len = 0;
	int r = chsm_read_file(path, 66, &data, &len);
	if (r < 0) {
		fprintf(stderr, "vsmtool: %s: %s\n", path,
			r == -EFBIG ? "password longer than 64 bytes" : strerror(-r));
		return r;
	}
	size_t n = len;
	if (n > 0 && data[n - 1] == '\n')
		n--;
	if (n > 0 && data[n - 1] == '\r')
		n--;
	if (n > 64 || memchr(data, '\0', n)) {
		fprintf(stderr, "vsmtool: %s: a password is 0..64 bytes without NUL\n", path);
		r = -EINVAL;
	} else {
		memcpy(out, data, n);
		out[n] = '\0';
	}
	crypto_free_secret(data, len + 1);
	return r;
}

struct conn {
	void *dev, *sess;
};

static int conn_open(const struct args *a, struct conn *c)
{
	c->dev = c->sess = NULL;
	int rc = a->config ? SDFX_OpenDeviceWithConfig(a->config, &c->dev) : SDF_OpenDevice(&c->dev);
	if (rc != SDR_OK) {
		fprintf(stderr, "vsmtool: cannot read the configuration (%s)\n",
			a->config ? a->config : "environment");
		return rc;
	}
	if ((rc = SDF_OpenSession(c->dev, &c->sess)) != SDR_OK) {
		SDF_CloseDevice(c->dev);
		c->dev = NULL;
	}
	return rc;
}

static void conn_close(struct conn *c)
{
	if (c->sess)
		SDF_CloseSession(c->sess);
	if (c->dev)
		SDF_CloseDevice(c->dev);
}

static void print_field(const char *name, const unsigned char *p, size_t cap)
{
	size_t n = strnlen((const char *)p, cap);
	printf("%s: %.*s\n", name, (int)n, (const char *)p);
}

static int cmd_info(const struct args *a)
{
	if (a->npos != 1 || !only_options(a, ""))
		return usage(usage_info);
	struct conn c;
	DEVICEINFO info;
	int rc = conn_open(a, &c);
	if (rc == SDR_OK)
		rc = SDF_GetDeviceInfo(c.sess, &info);
	conn_close(&c);
	if (rc != SDR_OK)
		return sdr_fail(rc);
	print_field("issuer", info.IssuerName, sizeof(info.IssuerName));
	print_field("device_name", info.DeviceName, sizeof(info.DeviceName));
	print_field("serial", info.DeviceSerial, sizeof(info.DeviceSerial));
	printf("device_version: 0x%08X\nstandard_version: 0x%08X\n"
	       "asym_alg_ability: 0x%08X 0x%08X\nsym_alg_ability: 0x%08X\n"
	       "hash_alg_ability: 0x%08X\nbuffer_size: %u\n",
	       info.DeviceVersion, info.StandardVersion, info.AsymAlgAbility[0],
	       info.AsymAlgAbility[1], info.SymAlgAbility, info.HashAlgAbility, info.BufferSize);
	return EXIT_OK;
}

static int cmd_random(const struct args *a)
{
	uint64_t n;
	if (a->npos != 2 || !only_options(a, "") || chsm_parse_u64(a->pos[1], 65536, &n) < 0 ||
	    n == 0)
		return usage(usage_random);
	unsigned char *buf = malloc(n);
	char *hex = malloc(2 * n + 1);
	struct conn c;
	int rc = SDR_NOBUFFER;
	if (buf && hex && (rc = conn_open(a, &c)) == SDR_OK) {
		rc = SDF_GenerateRandom(c.sess, (unsigned int)n, buf);
		conn_close(&c);
	}
	if (rc == SDR_OK) {
		chsm_hex_encode(buf, n, hex);
		printf("%s\n", hex);
	}
	free(buf);
	free(hex);
	return rc == SDR_OK ? EXIT_OK : sdr_fail(rc);
}

static const char *type_name(unsigned int t)
{
	return t == SDFX_KEY_SIGN ? "sign" : t == SDFX_KEY_ENC ? "enc" : t == SDFX_KEY_KEK ? "kek" : "?";
}

static int key_list(const struct args *a)
{
	struct conn c;
	int rc = conn_open(a, &c);
	SDFX_KEYINFO *keys = NULL;
	unsigned int count = 0;
	/* The list may grow between the two calls: try a few times. */
	for (int tries = 0; rc == SDR_OK && tries < 3; tries++) {
		unsigned int cap = count;
		rc = SDFX_ListKeys(c.sess, keys, &count);
		if (rc != SDR_NOBUFFER)
			break;
		SDFX_KEYINFO *nk = realloc(keys, (count ? count : 1) * sizeof(*nk));
		if (!nk || count <= cap) {
			rc = SDR_NOBUFFER;
			break;
		}
		keys = nk;
		rc = SDR_OK;
	}
	conn_close(&c);
	if (rc != SDR_OK) {
		free(keys);
		return sdr_fail(rc);
	}
	for (unsigned int i = 0; i < count; i++) {
		time_t t = (time_t)(keys[i].createdAtMs / 1000);
		struct tm tm;
		char when[32] = "-";
		if (gmtime_r(&t, &tm))
			strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
		printf("%s %u %s %s\n", type_name(keys[i].type), keys[i].index,
		       keys[i].hasPassword ? "password" : "-", when);
	}
	free(keys);
	return EXIT_OK;
}

static int key_export(const struct conn *c, unsigned int type, unsigned int index, char **ret_pem)
{
	ECCrefPublicKey pub;
	int rc = type == SDFX_KEY_SIGN ? SDF_ExportSignPublicKey_ECC(c->sess, index, &pub)
				       : SDF_ExportEncPublicKey_ECC(c->sess, index, &pub);
	if (rc != SDR_OK)
		return rc;
	uint8_t point[CRYPTO_SM2_POINT_LEN];
	crypto_sm2_key *key = NULL;
	size_t len;
	if (sdf_pub_to_point(&pub, point) < 0 || crypto_sm2_from_public_point(point, &key) < 0 ||
	    crypto_sm2_public_pem(key, ret_pem, &len) < 0)
		rc = SDR_PKOPERR;
	crypto_sm2_key_free(key);
	return rc;
}

static int cmd_key(const struct args *a)
{
	const char *sub = a->npos >= 2 ? a->pos[1] : NULL;
	unsigned int type = 0, index = 0;
	if (!sub)
		return usage(usage_key);
	if (strcmp(sub, "list") == 0) {
		if (a->npos != 2 || !only_options(a, ""))
			return usage(usage_key);
		return key_list(a);
	}
	bool gen = strcmp(sub, "gen") == 0, destroy = strcmp(sub, "destroy") == 0;
	bool setpw = strcmp(sub, "set-password") == 0, export = strcmp(sub, "export") == 0;
	if (!(gen || destroy || setpw || export) || a->npos != 4 ||
	    parse_key_type(a->pos[2], gen || destroy, &type) < 0 ||
	    parse_index(a->pos[3], &index) < 0 || !only_options(a, gen || setpw ? "p" : "") ||
	    (setpw && !a->password_file) || (gen && type == SDFX_KEY_KEK && a->password_file))
		return usage(usage_key);

	char password[65] = "";
	if (a->password_file && read_password(a->password_file, password) < 0)
		return EXIT_USAGE;
	struct conn c;
	char *pem = NULL;
	int rc = conn_open(a, &c);
	if (rc == SDR_OK) {
		if (gen)
			rc = SDFX_GenerateInternalKey(c.sess, type, index, password);
		else if (destroy)
			rc = SDFX_DestroyInternalKey(c.sess, type, index);
		else if (setpw)
			rc = SDFX_SetKeyPassword(c.sess, type, index, password);
		else
			rc = key_export(&c, type, index, &pem);
	}
	conn_close(&c);
	crypto_wipe(password, sizeof(password));
	if (rc != SDR_OK)
		return sdr_fail(rc);
	if (pem)
		fputs(pem, stdout);
	free(pem);
	return EXIT_OK;
}

/* e = SM3(Z || contents of path), Z for the signing key index and id. */
static int digest_file(const struct conn *c, unsigned int index, const char *id,
		       const char *path, uint8_t e[32], bool *ret_input_error)
{
	ECCrefPublicKey pub;
	int rc = SDF_ExportSignPublicKey_ECC(c->sess, index, &pub);
	if (rc != SDR_OK)
		return rc;
	const char *use_id = id ? id : CRYPTO_SM2_DEFAULT_ID;
	if ((rc = SDF_HashInit(c->sess, SGD_SM3, &pub, (unsigned char *)use_id,
			       (unsigned int)strlen(use_id))) != SDR_OK)
		return rc;
	FILE *f = fopen(path, "rb");
	if (!f) {
		fprintf(stderr, "vsmtool: %s: %s\n", path, strerror(errno));
		*ret_input_error = true;
		return SDR_INARGERR;
	}
	unsigned char *buf = malloc(HASH_CHUNK);
	size_t n;
	rc = buf ? SDR_OK : SDR_NOBUFFER;
	while (rc == SDR_OK && (n = fread(buf, 1, HASH_CHUNK, f)) > 0)
		rc = SDF_HashUpdate(c->sess, buf, (unsigned int)n);
	if (rc == SDR_OK && ferror(f)) {
		fprintf(stderr, "vsmtool: %s: read error\n", path);
		*ret_input_error = true;
		rc = SDR_INARGERR;
	}
	fclose(f);
	free(buf);
	unsigned int elen;
	if (rc == SDR_OK)
		rc = SDF_HashFinal(c->sess, e, &elen);
	return rc;
}

static int cmd_sign(const struct args *a)
{
	unsigned int index;
	if (a->npos != 2 || parse_index(a->pos[1], &index) < 0 || !a->in ||
	    !only_options(a, "piod"))
		return usage(usage_sign);
	char password[65] = "";
	if (a->password_file && read_password(a->password_file, password) < 0)
		return EXIT_USAGE;
	struct conn c;
	uint8_t e[32], der[CRYPTO_SM2_SIG_DER_MAX];
	size_t derlen = 0;
	bool input_error = false;
	ECCSignature sig;
	int rc = conn_open(a, &c);
	if (rc == SDR_OK)
		rc = digest_file(&c, index, a->id, a->in, e, &input_error);
	if (rc == SDR_OK && a->password_file)
		rc = SDF_GetPrivateKeyAccessRight(c.sess, index, (unsigned char *)password,
						  (unsigned int)strlen(password));
	if (rc == SDR_OK)
		rc = SDF_InternalSign_ECC(c.sess, index, e, sizeof(e), &sig);
	if (rc == SDR_OK && sdf_sig_to_der(&sig, der, &derlen) < 0)
		rc = SDR_SIGNERR;
	conn_close(&c);
	crypto_wipe(password, sizeof(password));
	if (input_error)
		return EXIT_USAGE;
	if (rc != SDR_OK)
		return sdr_fail(rc);
	if (a->out) {
		int r = chsm_write_file_atomic(a->out, der, derlen, 0644);
		if (r < 0) {
			fprintf(stderr, "vsmtool: %s: %s\n", a->out, strerror(-r));
			return EXIT_USAGE;
		}
		return EXIT_OK;
	}
	char *b64 = NULL;
	if (crypto_base64_encode(der, derlen, &b64) < 0)
		return sdr_fail(SDR_NOBUFFER);
	printf("%s\n", b64);
	free(b64);
	return EXIT_OK;
}

/* A signature file: DER, or base64 of DER (surrounding whitespace ignored). */
static int read_signature(const char *path, ECCSignature *sig)
{
	char *data = NULL;
	size_t len = 0;
	int r = chsm_read_file(path, MAX_SIG_FILE, &data, &len);
	if (r < 0) {
		fprintf(stderr, "vsmtool: %s: %s\n", path, strerror(-r));
		return r;
	}
	if (sdf_sig_from_der((const uint8_t *)data, len, sig) < 0) {
		size_t b = 0, e = len;
		while (b < e && (data[b] == ' ' || data[b] == '\n' || data[b] == '\r' || data[b] == '\t'))
			b++;
		while (e > b && (data[e - 1] == ' ' || data[e - 1] == '\n' || data[e - 1] == '\r' ||
				 data[e - 1] == '\t'))
			e--;
		uint8_t *der = NULL;
		size_t derlen = 0;
		r = crypto_base64_decode(data + b, e - b, &der, &derlen);
		if (r == 0)
			r = sdf_sig_from_der(der, derlen, sig);
		free(der);
		if (r < 0)
			fprintf(stderr, "vsmtool: %s: not an SM2 signature (DER or base64)\n", path);
	}
	free(data);
	return r;
}

static int cmd_verify(const struct args *a)
{
	unsigned int index;
	if (a->npos != 2 || parse_index(a->pos[1], &index) < 0 || !a->in || !a->sig ||
	    !only_options(a, "isd"))
		return usage(usage_verify);
	ECCSignature sig;
	if (read_signature(a->sig, &sig) < 0)
		return EXIT_USAGE;
	struct conn c;
	uint8_t e[32];
	bool input_error = false;
	int rc = conn_open(a, &c);
	if (rc == SDR_OK)
		rc = digest_file(&c, index, a->id, a->in, e, &input_error);
	if (rc == SDR_OK)
		rc = SDF_InternalVerify_ECC(c.sess, index, e, sizeof(e), &sig);
	conn_close(&c);
	if (input_error)
		return EXIT_USAGE;
	if (rc != SDR_OK)
		return sdr_fail(rc);
	printf("OK\n");
	return EXIT_OK;
}

int main(int argc, char **argv)
{
	struct args a;
	if (parse_args(argc, argv, &a) < 0)
		return usage(usage_main);
	static const struct {
		const char *name;
		int (*run)(const struct args *);
		const char *usage;
	} cmds[] = {
		{"info", cmd_info, usage_info},       {"random", cmd_random, usage_random},
		{"key", cmd_key, usage_key},          {"sign", cmd_sign, usage_sign},
		{"verify", cmd_verify, usage_verify},
	};
	if (a.npos == 0) {
		if (a.help) {
			fputs(usage_main, stdout);
			return EXIT_OK;
		}
		return usage(usage_main);
	}
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
		if (strcmp(a.pos[0], cmds[i].name) != 0)
			continue;
		if (a.help) {
			fputs(cmds[i].usage, stdout);
			return EXIT_OK;
		}
		return cmds[i].run(&a);
	}
	fprintf(stderr, "vsmtool: unknown command %s\n", a.pos[0]);
	return usage(usage_main);
}
