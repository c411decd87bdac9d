/*
 * main.c: vsmtool, the tenant's command-line tool for a VSM, built on the
 * SDF library (include/openchsm/sdf.h). Usage: docs/sdf.md#vsmtool.
 *
 * Contract with scripts: results go to stdout (hex, PEM, base64 or plain
 * lines), nothing else does. Exit status 0 on success; 1 when the library
 * or the VSM returns an SDR code, printed to stderr as "NAME (0xHEX)", when
 * a signature does not verify or an encrypted file fails its check; 2 for
 * usage and input errors (bad arguments, unreadable files), with the
 * relevant usage text. Passwords and the token secret are read from files,
 * never from the command line, and wiped after use. An output file
 * (encrypt, decrypt) appears complete or not at all.
 */
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/util.h"
#include "crypto/crypto.h"
#include "openchsm/sdf.h"
#include "sdf/sdf_internal.h"

enum { EXIT_OK = 0, EXIT_SDR = 1, EXIT_USAGE = 2 };

#define MAX_SIG_FILE  4096
#define MAX_RANDOM    65536
/* Bytes per SDF_Encrypt/Decrypt/CalculateMAC call and per hash update (a
 * multiple of 16, below the library's 1 MiB bound on one call). */
#define IO_CHUNK      (256 * 1024)

/* ---- the encrypted file (docs/sdf.md#the-encrypted-file) ---- */
#define ENC_MAGIC      "OCHSMSM4"
#define ENC_VERSION    1
#define ENC_MODE_ECB   1
#define ENC_MODE_CBC   2
#define ENC_HEADER_LEN 80
#define ENC_MAC_LEN    16
#define OFF_MAGIC      0
#define OFF_VERSION    8
#define OFF_MODE       9
#define OFF_RESERVED1  10
#define OFF_KEK_INDEX  12
#define OFF_WRAP_ENC   16
#define OFF_WRAP_MAC   32
#define OFF_IV         48
#define OFF_CT_LEN     64
#define OFF_RESERVED2  72

static const char usage_main[] =
	"usage: vsmtool [--endpoint HOST:PORT --token-id ID --token-secret-file FILE]\n"
	"               [--config FILE] COMMAND [OPTIONS]\n"
	"\n"
	"The VSM and token: the three flags (FILE holds the token secret in base64,\n"
	"as configured through 7.3.4), else --config FILE, else the environment\n"
	"(OPENCHSM_SDF_CONFIG or OPENCHSM_SDF_ENDPOINT, OPENCHSM_SDF_TOKEN_ID and\n"
	"OPENCHSM_SDF_TOKEN_SECRET_FILE / OPENCHSM_SDF_TOKEN_SECRET_BASE64_FILE).\n"
	"\n"
	"commands:\n"
	"  info\n"
	"  random --bytes N\n"
	"  keygen --index N [--usage sign|enc] [--password-file F]\n"
	"  kek-gen --index N\n"
	"  list\n"
	"  delete --index N [--usage sign|enc|kek]\n"
	"  pubkey --index N [--usage sign|enc]\n"
	"  sign --index N --in FILE [--id ID] [--password-file F]\n"
	"  verify (--index N | --pubkey PEM) --in FILE --sig FILE [--id ID]\n"
	"  encrypt --kek-index N --in FILE --out FILE [--mode cbc|ecb]\n"
	"  decrypt --kek-index N --in FILE --out FILE\n"
	"  hash --in FILE [--pubkey-index N [--id ID]]\n"
	"\n"
	"Exit status: 0 ok, 1 SDR error, invalid signature or damaged file,\n"
	"2 usage or input error. COMMAND --help prints the command's usage.\n";
static const char usage_info[] = "usage: vsmtool info\nPrints the device information.\n";
static const char usage_random[] =
	"usage: vsmtool random --bytes N\nPrints N (1..65536) random bytes in hex.\n";
static const char usage_keygen[] =
	"usage: vsmtool keygen --index N [--usage sign|enc] [--password-file F]\n"
	"Generates an SM2 key pair (default: a signing key) at index N. A password\n"
	"file holds up to 64 bytes; one final newline is ignored.\n";
static const char usage_kekgen[] =
	"usage: vsmtool kek-gen --index N\nGenerates an SM4 key-encryption key at index N.\n";
static const char usage_list[] =
	"usage: vsmtool list\n"
	"Prints one line per key: TYPE INDEX password=yes|no created=TIME (UTC).\n";
static const char usage_delete[] =
	"usage: vsmtool delete --index N [--usage sign|enc|kek]\n"
	"Destroys the key at index N. Without --usage the index must hold one key;\n"
	"when it holds several, --usage is required (exit 2).\n";
static const char usage_pubkey[] =
	"usage: vsmtool pubkey --index N [--usage sign|enc]\n"
	"Prints the public key (default: the signing key) as SubjectPublicKeyInfo PEM.\n";
static const char usage_sign[] =
	"usage: vsmtool sign --index N --in FILE [--id ID] [--password-file F]\n"
	"Signs SM3(Z || FILE) with the signing key N (Z for ID, default\n"
	"1234567812345678) and prints the DER signature in base64.\n";
static const char usage_verify[] =
	"usage: vsmtool verify --index N --in FILE --sig FILE [--id ID]\n"
	"       vsmtool verify --pubkey PEM --in FILE --sig FILE [--id ID]\n"
	"Verifies a signature (DER or base64) of FILE with the signing key N or an\n"
	"SM2 public key in a PEM file. Exit 0 and \"OK\" when valid, 1 when not.\n";
static const char usage_encrypt[] =
	"usage: vsmtool encrypt --kek-index N --in FILE --out FILE [--mode cbc|ecb]\n"
	"Encrypts FILE (a regular file) with SM4 (default CBC) under a fresh session\n"
	"key wrapped by the KEK N, with an SM4 CBC-MAC, into a self-describing file.\n";
static const char usage_decrypt[] =
	"usage: vsmtool decrypt --kek-index N --in FILE --out FILE\n"
	"Checks and decrypts a file made by encrypt; a damaged file is refused (exit 1)\n"
	"and --out is not written.\n";
static const char usage_hash[] =
	"usage: vsmtool hash --in FILE [--pubkey-index N [--id ID]]\n"
	"Prints SM3(FILE) in hex; with --pubkey-index, SM3(Z || FILE) where Z is for\n"
	"the signing key N and ID (default 1234567812345678).\n";

/* Options, each a bit so that a command can say which it takes. */
enum {
	O_BYTES = 1 << 0,
	O_INDEX = 1 << 1,
	O_USAGE = 1 << 2,
	O_PASSWORD = 1 << 3,
	O_IN = 1 << 4,
	O_OUT = 1 << 5,
	O_SIG = 1 << 6,
	O_ID = 1 << 7,
	O_PUBKEY = 1 << 8,
	O_KEK_INDEX = 1 << 9,
	O_MODE = 1 << 10,
	O_PUBKEY_INDEX = 1 << 11,
	O_GLOBAL = 1 << 12, /* --endpoint, --token-id, --token-secret-file, --config */
};

/* The parsed command line. */
struct args {
	const char *endpoint, *token_id, *secret_file, *config;
	const char *command;
	const char *bytes, *index, *key_usage, *password_file, *in, *out, *sig, *id, *pubkey,
		*kek_index, *mode, *pubkey_index;
	unsigned int given; /* O_* bits */
	bool help;
};

static const struct {
	const char *name;
	size_t off;
	unsigned int bit;
} options[] = {
	{"--endpoint", offsetof(struct args, endpoint), O_GLOBAL},
	{"--token-id", offsetof(struct args, token_id), O_GLOBAL},
	{"--token-secret-file", offsetof(struct args, secret_file), O_GLOBAL},
	{"--config", offsetof(struct args, config), O_GLOBAL},
	{"--bytes", offsetof(struct args, bytes), O_BYTES},
	{"--index", offsetof(struct args, index), O_INDEX},
	{"--usage", offsetof(struct args, key_usage), O_USAGE},
	{"--password-file", offsetof(struct args, password_file), O_PASSWORD},
	{"--in", offsetof(struct args, in), O_IN},
	{"--out", offsetof(struct args, out), O_OUT},
	{"--sig", offsetof(struct args, sig), O_SIG},
	{"--id", offsetof(struct args, id), O_ID},
	{"--pubkey", offsetof(struct args, pubkey), O_PUBKEY},
	{"--kek-index", offsetof(struct args, kek_index), O_KEK_INDEX},
	{"--mode", offsetof(struct args, mode), O_MODE},
	{"--pubkey-index", offsetof(struct args, pubkey_index), O_PUBKEY_INDEX},
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
	for (int i = 1; i < argc; i++) {
		const char *s = argv[i];
		if (strcmp(s, "--help") == 0 || strcmp(s, "-h") == 0) {
			a->help = true;
			continue;
		}
		if (s[0] == '-' && s[1] != '\0') {
			size_t k;
			for (k = 0; k < sizeof(options) / sizeof(options[0]); k++)
				if (strcmp(s, options[k].name) == 0)
					break;
			if (k == sizeof(options) / sizeof(options[0]) || i + 1 >= argc) {
				fprintf(stderr, "vsmtool: %s %s\n",
					k == sizeof(options) / sizeof(options[0]) ? "unknown option"
										  : "no value for",
					s);
				return -EINVAL;
			}
			const char **slot = (const char **)((char *)a + options[k].off);
			if (*slot) {
				fprintf(stderr, "vsmtool: %s given twice\n", s);
				return -EINVAL;
			}
			*slot = argv[++i];
			a->given |= options[k].bit;
			continue;
		}
		if (a->command) {
			fprintf(stderr, "vsmtool: unexpected argument %s\n", s);
			return -EINVAL;
		}
		a->command = s;
	}
	return 0;
}

/* Parses a key index (1..2^32-1) given as the value of option. */
static int parse_index(const char *option, const char *s, unsigned int *ret)
{
	uint64_t v;
	if (!s || chsm_parse_u64(s, 0xffffffffu, &v) < 0 || v == 0) {
		fprintf(stderr, "vsmtool: %s takes an index from 1\n", option);
		return -EINVAL;
	}
	*ret = (unsigned int)v;
	return 0;
}

/* Parses --usage (default: sign when s is NULL). */
static int parse_key_usage(const char *s, bool allow_kek, unsigned int *ret)
{
	if (!s || strcmp(s, "sign") == 0)
		*ret = SDFX_KEY_SIGN;
	else if (strcmp(s, "enc") == 0)
		*ret = SDFX_KEY_ENC;
	else if (allow_kek && strcmp(s, "kek") == 0)
		*ret = SDFX_KEY_KEK;
	else {
		fprintf(stderr, "vsmtool: --usage takes sign, enc%s\n", allow_kek ? " or kek" : "");
		return -EINVAL;
	}
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

/* Opens a device and a session: from the three flags (handed to the
 * library as its environment, the secret file in base64), else --config,
 * else the environment as it is. */
static int conn_open(const struct args *a, struct conn *c)
{
	c->dev = c->sess = NULL;
	int rc;
	const char *from;
	if (a->endpoint) {
		from = "--endpoint, --token-id, --token-secret-file";
		unsetenv("OPENCHSM_SDF_CONFIG");
		unsetenv("OPENCHSM_SDF_TOKEN_SECRET_FILE");
		if (setenv("OPENCHSM_SDF_ENDPOINT", a->endpoint, 1) < 0 ||
		    setenv("OPENCHSM_SDF_TOKEN_ID", a->token_id, 1) < 0 ||
		    setenv("OPENCHSM_SDF_TOKEN_SECRET_BASE64_FILE", a->secret_file, 1) < 0)
			rc = SDR_NOBUFFER;
		else
			rc = SDF_OpenDevice(&c->dev);
	} else if (a->config) {
		from = a->config;
		rc = SDFX_OpenDeviceWithConfig(a->config, &c->dev);
	} else {
		from = "the environment";
		rc = SDF_OpenDevice(&c->dev);
	}
	if (rc != SDR_OK) {
		fprintf(stderr, "vsmtool: bad VSM endpoint, token ID or token secret file (%s)\n",
			from);
		c->dev = NULL;
		return rc;
	}
	if ((rc = SDF_OpenSession(c->dev, &c->sess)) != SDR_OK) {
		c->sess = NULL;
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
	c->sess = c->dev = NULL;
}

/* Destroys the session keys (NULL handles are skipped), then closes. */
static void conn_close_keys(struct conn *c, void *kenc, void *kmac)
{
	if (kenc)
		SDF_DestroyKey(c->sess, kenc);
	if (kmac)
		SDF_DestroyKey(c->sess, kmac);
	conn_close(c);
}

static void print_field(const char *name, const unsigned char *p, size_t cap)
{
	size_t n = strnlen((const char *)p, cap);
	printf("%s: %.*s\n", name, (int)n, (const char *)p);
}

static int cmd_info(const struct args *a)
{
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
	if (chsm_parse_u64(a->bytes, MAX_RANDOM, &n) < 0 || n == 0)
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

static int cmd_keygen(const struct args *a, bool kek)
{
	unsigned int type = SDFX_KEY_KEK, index;
	if (parse_index("--index", a->index, &index) < 0 ||
	    (!kek && parse_key_usage(a->key_usage, false, &type) < 0))
		return usage(kek ? usage_kekgen : usage_keygen);
	char password[65] = "";
	if (a->password_file && read_password(a->password_file, password) < 0)
		return EXIT_USAGE;
	struct conn c;
	int rc = conn_open(a, &c);
	if (rc == SDR_OK)
		rc = SDFX_GenerateInternalKey(c.sess, type, index, password);
	conn_close(&c);
	crypto_wipe(password, sizeof(password));
	return rc == SDR_OK ? EXIT_OK : sdr_fail(rc);
}

static const char *type_name(unsigned int t)
{
	return t == SDFX_KEY_SIGN ? "sign" : t == SDFX_KEY_ENC ? "enc" : t == SDFX_KEY_KEK ? "kek" : "?";
}

/* The VSM's keys, in *ret_keys (malloc'ed) and *ret_count. */
static int list_keys(const struct conn *c, SDFX_KEYINFO **ret_keys, unsigned int *ret_count)
{
	SDFX_KEYINFO *keys = NULL;
	unsigned int count = 0;
	int rc = SDR_OK;
	/* The list may grow between two calls: try a few times. */
	for (int tries = 0; tries < 3; tries++) {
		unsigned int cap = count;
		rc = SDFX_ListKeys(c->sess, keys, &count);
		if (rc != SDR_NOBUFFER)
			break;
		SDFX_KEYINFO *nk = realloc(keys, (count ? count : 1) * sizeof(*nk));
		if (!nk || count <= cap) {
			free(nk ? nk : keys);
			return SDR_NOBUFFER;
		}
		keys = nk;
	}
	if (rc != SDR_OK) {
		free(keys);
		return rc;
	}
	*ret_keys = keys;
	*ret_count = count;
	return SDR_OK;
}

static int cmd_list(const struct args *a)
{
	struct conn c;
	SDFX_KEYINFO *keys = NULL;
	unsigned int count = 0;
	int rc = conn_open(a, &c);
	if (rc == SDR_OK)
		rc = list_keys(&c, &keys, &count);
	conn_close(&c);
	if (rc != SDR_OK)
		return sdr_fail(rc);
	for (unsigned int i = 0; i < count; i++) {
		time_t t = (time_t)(keys[i].createdAtMs / 1000);
		struct tm tm;
		char when[32] = "-";
		if (gmtime_r(&t, &tm))
			strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
		printf("%s %u password=%s created=%s\n", type_name(keys[i].type), keys[i].index,
		       keys[i].hasPassword ? "yes" : "no", when);
	}
	free(keys);
	return EXIT_OK;
}

static int cmd_delete(const struct args *a)
{
	unsigned int index, type = 0;
	if (parse_index("--index", a->index, &index) < 0 ||
	    (a->key_usage && parse_key_usage(a->key_usage, true, &type) < 0))
		return usage(usage_delete);
	struct conn c;
	int rc = conn_open(a, &c);
	if (rc == SDR_OK && !a->key_usage) {
		/* Which keys does the index hold? */
		SDFX_KEYINFO *keys = NULL;
		unsigned int count = 0, found = 0;
		if ((rc = list_keys(&c, &keys, &count)) == SDR_OK) {
			for (unsigned int i = 0; i < count; i++)
				if (keys[i].index == index) {
					type = keys[i].type;
					found++;
				}
			free(keys);
			if (found == 0)
				rc = SDR_KEYNOTEXIST;
		}
		if (found > 1) {
			conn_close(&c);
			fprintf(stderr, "vsmtool: index %u holds %u keys; say which with --usage\n",
				index, found);
			return usage(usage_delete);
		}
	}
	if (rc == SDR_OK)
		rc = SDFX_DestroyInternalKey(c.sess, type, index);
	conn_close(&c);
	return rc == SDR_OK ? EXIT_OK : sdr_fail(rc);
}

/* The public key of type at index as SubjectPublicKeyInfo PEM. */
static int export_pem(const struct conn *c, unsigned int type, unsigned int index, char **ret_pem)
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

static int cmd_pubkey(const struct args *a)
{
	unsigned int index, type;
	if (parse_index("--index", a->index, &index) < 0 ||
	    parse_key_usage(a->key_usage, false, &type) < 0)
		return usage(usage_pubkey);
	struct conn c;
	char *pem = NULL;
	int rc = conn_open(a, &c);
	if (rc == SDR_OK)
		rc = export_pem(&c, type, index, &pem);
	conn_close(&c);
	if (rc != SDR_OK)
		return sdr_fail(rc);
	fputs(pem, stdout);
	free(pem);
	return EXIT_OK;
}

/* Hashes the file at path with SDF_HashInit/Update/Final: SM3(Z || file)
 * with pub and id (NULL: the default ID), or SM3(file) when pub is NULL.
 * *ret_input_error is set when the file cannot be read (an SDR code is
 * returned then too). */
static int hash_file(const struct conn *c, ECCrefPublicKey *pub, const char *id, const char *path,
		     uint8_t e[32], bool *ret_input_error)
{
	const char *use_id = id ? id : CRYPTO_SM2_DEFAULT_ID;
	int rc = SDF_HashInit(c->sess, SGD_SM3, pub, pub ? (unsigned char *)use_id : NULL,
			      pub ? (unsigned int)strlen(use_id) : 0);
	if (rc != SDR_OK)
		return rc;
	FILE *f = fopen(path, "rb");
	if (!f) {
		fprintf(stderr, "vsmtool: %s: %s\n", path, strerror(errno));
		*ret_input_error = true;
		return SDR_INARGERR;
	}
	unsigned char *buf = malloc(IO_CHUNK);
	size_t n;
	rc = buf ? SDR_OK : SDR_NOBUFFER;
	while (rc == SDR_OK && (n = fread(buf, 1, IO_CHUNK, f)) > 0)
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
	if (parse_index("--index", a->index, &index) < 0)
		return usage(usage_sign);
	char password[65] = "";
	if (a->password_file && read_password(a->password_file, password) < 0)
		return EXIT_USAGE;
	struct conn c;
	uint8_t e[32], der[CRYPTO_SM2_SIG_DER_MAX];
	size_t derlen = 0;
	bool input_error = false;
	ECCrefPublicKey pub;
	ECCSignature sig;
	int rc = conn_open(a, &c);
	if (rc == SDR_OK)
		rc = SDF_ExportSignPublicKey_ECC(c.sess, index, &pub);
	if (rc == SDR_OK)
		rc = hash_file(&c, &pub, a->id, a->in, e, &input_error);
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

/* Reads an SM2 public key from a PEM file (SubjectPublicKeyInfo). */
static int read_pubkey_pem(const char *path, ECCrefPublicKey *pub)
{
	char *pem = NULL;
	size_t len = 0;
	crypto_sm2_key *key = NULL;
	uint8_t point[CRYPTO_SM2_POINT_LEN];
	int r = chsm_read_file(path, 16384, &pem, &len);
	if (r < 0) {
		fprintf(stderr, "vsmtool: %s: %s\n", path, strerror(-r));
		return r;
	}
	if ((r = crypto_sm2_load_public_pem(pem, len, &key)) < 0 ||
	    (r = crypto_sm2_public_point(key, point)) < 0 || (r = sdf_pub_from_point(point, pub)) < 0)
		fprintf(stderr, "vsmtool: %s: not an SM2 public key in PEM\n", path);
	crypto_sm2_key_free(key);
	free(pem);
	return r;
}

static int cmd_verify(const struct args *a)
{
	unsigned int index = 0;
	if (!a->index == !a->pubkey || (a->index && parse_index("--index", a->index, &index) < 0))
		return usage(usage_verify);
	ECCSignature sig;
	ECCrefPublicKey pub;
	if (read_signature(a->sig, &sig) < 0 || (a->pubkey && read_pubkey_pem(a->pubkey, &pub) < 0))
		return EXIT_USAGE;
	struct conn c;
	uint8_t e[32];
	bool input_error = false;
	int rc = conn_open(a, &c);
	if (rc == SDR_OK && index)
		rc = SDF_ExportSignPublicKey_ECC(c.sess, index, &pub);
	if (rc == SDR_OK)
		rc = hash_file(&c, &pub, a->id, a->in, e, &input_error);
	if (rc == SDR_OK)
		rc = index ? SDF_InternalVerify_ECC(c.sess, index, e, sizeof(e), &sig)
			   : SDF_ExternalVerify_ECC(c.sess, SGD_SM2_1, &pub, e, sizeof(e), &sig);
	conn_close(&c);
	if (input_error)
		return EXIT_USAGE;
	if (rc == SDR_VERIFYERR)
		fprintf(stderr, "vsmtool: the signature does not verify\n");
	if (rc != SDR_OK)
		return sdr_fail(rc);
	printf("OK\n");
	return EXIT_OK;
}

static int cmd_hash(const struct args *a)
{
	unsigned int index = 0;
	if ((a->pubkey_index && parse_index("--pubkey-index", a->pubkey_index, &index) < 0) ||
	    (a->id && !a->pubkey_index))
		return usage(usage_hash);
	struct conn c;
	uint8_t e[32];
	char hex[65];
	bool input_error = false;
	ECCrefPublicKey pub;
	int rc = conn_open(a, &c);
	if (rc == SDR_OK && index)
		rc = SDF_ExportSignPublicKey_ECC(c.sess, index, &pub);
	if (rc == SDR_OK)
		rc = hash_file(&c, index ? &pub : NULL, a->id, a->in, e, &input_error);
	conn_close(&c);
	if (input_error)
		return EXIT_USAGE;
	if (rc != SDR_OK)
		return sdr_fail(rc);
	chsm_hex_encode(e, sizeof(e), hex);
	printf("%s\n", hex);
	return EXIT_OK;
}

/* ---- encrypt, decrypt ---- */

static void put_be32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (24 - 8 * i));
}

static void put_be64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (56 - 8 * i));
}

static uint64_t get_be(const uint8_t *p, int n)
{
	uint64_t v = 0;
	for (int i = 0; i < n; i++)
		v = v << 8 | p[i];
	return v;
}

/* An output file written as a temporary file beside its final path and
 * renamed into place by out_commit; out_abort removes it. */
struct outfile {
	char *final, *tmp;
	FILE *f;
};

static int out_open(const char *path, struct outfile *o)
{
	o->final = strdup(path);
	size_t n = strlen(path) + sizeof(".tmp.XXXXXX");
	o->tmp = malloc(n);
	o->f = NULL;
	if (!o->final || !o->tmp) {
		free(o->final);
		free(o->tmp);
		return -ENOMEM;
	}
	snprintf(o->tmp, n, "%s.tmp.XXXXXX", path);
	int fd = mkstemp(o->tmp);
	if (fd < 0 || fcntl(fd, F_SETFD, FD_CLOEXEC) < 0 || !(o->f = fdopen(fd, "wb"))) {
		int r = -errno;
		if (fd >= 0) {
			close(fd);
			unlink(o->tmp);
		}
		fprintf(stderr, "vsmtool: %s: %s\n", path, strerror(-r));
		free(o->final);
		free(o->tmp);
		return r;
	}
	return 0;
}

static int out_write(struct outfile *o, const void *p, size_t n)
{
	if (n && fwrite(p, 1, n, o->f) != n) {
		fprintf(stderr, "vsmtool: %s: %s\n", o->final, strerror(errno));
		return -EIO;
	}
	return 0;
}

static void out_abort(struct outfile *o)
{
	if (o->f)
		fclose(o->f);
	unlink(o->tmp);
	free(o->final);
	free(o->tmp);
	o->f = NULL;
}

static int out_commit(struct outfile *o)
{
	int r = 0;
	if (fflush(o->f) != 0 || fsync(fileno(o->f)) < 0)
		r = -errno;
	if (fclose(o->f) != 0 && r == 0)
		r = -errno;
	o->f = NULL;
	if (r == 0 && rename(o->tmp, o->final) < 0)
		r = -errno;
	if (r < 0) {
		fprintf(stderr, "vsmtool: %s: %s\n", o->final, strerror(-r));
		unlink(o->tmp);
	}
	free(o->final);
	free(o->tmp);
	return r;
}

/* Opens a regular file for reading and gives its size. */
static FILE *open_regular(const char *path, uint64_t *ret_size)
{
	FILE *f = fopen(path, "rb");
	struct stat st;
	const char *why = NULL;
	if (!f || fstat(fileno(f), &st) < 0)
		why = strerror(errno);
	else if (!S_ISREG(st.st_mode))
		why = "not a regular file";
	if (why) {
		fprintf(stderr, "vsmtool: %s: %s\n", path, why);
		if (f)
			fclose(f);
		return NULL;
	}
	*ret_size = (uint64_t)st.st_size;
	return f;
}

/* Reads exactly n bytes; false (with a message) on a short read. */
static bool read_exact(FILE *f, const char *path, void *buf, size_t n)
{
	if (fread(buf, 1, n, f) == n)
		return true;
	fprintf(stderr, "vsmtool: %s: %s\n", path, ferror(f) ? strerror(errno) : "changed while read");
	return false;
}

static int mac_update(void *sess, void *key, uint8_t iv[16], uint8_t *data, size_t n, uint8_t mac[16])
{
	unsigned int maclen;
	return SDF_CalculateMAC(sess, key, SGD_SM4_MAC, iv, data, (unsigned int)n, mac, &maclen);
}

static int cmd_encrypt(const struct args *a)
{
	unsigned int kek, alg = SGD_SM4_CBC;
	if (parse_index("--kek-index", a->kek_index, &kek) < 0)
		return usage(usage_encrypt);
	if (a->mode && strcmp(a->mode, "ecb") == 0)
		alg = SGD_SM4_ECB;
	else if (a->mode && strcmp(a->mode, "cbc") != 0)
		return usage(usage_encrypt);
	uint64_t size;
	FILE *in = open_regular(a->in, &size);
	if (!in)
		return EXIT_USAGE;
	uint8_t *buf = malloc(IO_CHUNK + 16);
	uint8_t hdr[ENC_HEADER_LEN] = {0}, iv[16] = {0}, mac_iv[16] = {0}, mac[16];
	uint64_t ct_len = (size / 16 + 1) * 16, done = 0;
	unsigned int wlen;
	void *kenc = NULL, *kmac = NULL;
	struct conn c = {0};
	struct outfile out = {0};
	bool input_error = false, out_opened = false;
	int rc = buf ? conn_open(a, &c) : SDR_NOBUFFER;

	/* Two fresh session keys under the KEK: one encrypts, one MACs. */
	memcpy(hdr + OFF_MAGIC, ENC_MAGIC, 8);
	hdr[OFF_VERSION] = ENC_VERSION;
	hdr[OFF_MODE] = alg == SGD_SM4_CBC ? ENC_MODE_CBC : ENC_MODE_ECB;
	put_be32(hdr + OFF_KEK_INDEX, kek);
	put_be64(hdr + OFF_CT_LEN, ct_len);
	if (rc == SDR_OK)
		rc = SDF_GenerateKeyWithKEK(c.sess, 128, SGD_SM4_ECB, kek, hdr + OFF_WRAP_ENC, &wlen,
					    &kenc);
	if (rc == SDR_OK)
		rc = SDF_GenerateKeyWithKEK(c.sess, 128, SGD_SM4_ECB, kek, hdr + OFF_WRAP_MAC, &wlen,
					    &kmac);
	if (rc == SDR_OK && alg == SGD_SM4_CBC)
		rc = SDF_GenerateRandom(c.sess, 16, iv);
	memcpy(hdr + OFF_IV, iv, 16);
	if (rc == SDR_OK)
		rc = mac_update(c.sess, kmac, mac_iv, hdr, sizeof(hdr), mac);
	if (rc == SDR_OK) {
		if (out_open(a->out, &out) < 0 || out_write(&out, hdr, sizeof(hdr)) < 0)
			input_error = true;
		out_opened = out.f != NULL;
	}
	while (rc == SDR_OK && !input_error && done < ct_len) {
		/* Whole chunks, then the rest with its PKCS#7 padding. */
		uint64_t left = size - done;
		size_t n = left >= IO_CHUNK ? IO_CHUNK : (size_t)left;
		if (!read_exact(in, a->in, buf, n)) {
			input_error = true;
			break;
		}
		if (n < IO_CHUNK) {
			size_t pad = 16 - n % 16;
			memset(buf + n, (int)pad, pad);
			n += pad;
		}
		unsigned int outlen;
		rc = SDF_Encrypt(c.sess, kenc, alg, alg == SGD_SM4_CBC ? iv : NULL, buf,
				 (unsigned int)n, buf, &outlen);
		if (rc == SDR_OK)
			rc = mac_update(c.sess, kmac, mac_iv, buf, n, mac);
		if (rc == SDR_OK && out_write(&out, buf, n) < 0)
			input_error = true;
		done += n;
	}
	if (rc == SDR_OK && !input_error && fgetc(in) != EOF) {
		fprintf(stderr, "vsmtool: %s: changed while read\n", a->in);
		input_error = true;
	}
	if (out_opened) {
		if (rc == SDR_OK && !input_error) {
			if (out_write(&out, mac, sizeof(mac)) < 0) {
				input_error = true;
				out_abort(&out);
			} else if (out_commit(&out) < 0) {
				input_error = true;
			}
		} else {
			out_abort(&out);
		}
	}
	conn_close_keys(&c, kenc, kmac);
	fclose(in);
	if (buf)
		crypto_free_secret(buf, IO_CHUNK + 16);
	if (input_error)
		return EXIT_USAGE;
	return rc == SDR_OK ? EXIT_OK : sdr_fail(rc);
}

/* Checks the fixed part of an encrypted file's header against its size. */
static bool header_ok(const uint8_t *hdr, uint64_t size, uint64_t *ret_ct_len)
{
	static const uint8_t zero[8] = {0};
	uint64_t ct_len = get_be(hdr + OFF_CT_LEN, 8);
	if (memcmp(hdr + OFF_MAGIC, ENC_MAGIC, 8) != 0 || hdr[OFF_VERSION] != ENC_VERSION ||
	    (hdr[OFF_MODE] != ENC_MODE_ECB && hdr[OFF_MODE] != ENC_MODE_CBC) ||
	    memcmp(hdr + OFF_RESERVED1, zero, 2) != 0 || memcmp(hdr + OFF_RESERVED2, zero, 8) != 0 ||
	    ct_len == 0 || ct_len % 16 != 0 || ct_len > size ||
	    size - ct_len != ENC_HEADER_LEN + ENC_MAC_LEN)
		return false;
	if (hdr[OFF_MODE] == ENC_MODE_ECB && memcmp(hdr + OFF_IV, (const uint8_t[16]){0}, 16) != 0)
		return false;
	*ret_ct_len = ct_len;
	return true;
}

/* One pass over the ciphertext of an encrypted file (positioned after the
 * header): MACs it, and when out is given also decrypts it into out
 * (stripping the padding). The MAC, over header and ciphertext, is
 * compared with the stored one before the last block is decrypted:
 * SDR_MACERR when they differ. */
static int decrypt_pass(void *sess, void *kenc, void *kmac, const uint8_t *hdr, FILE *in,
			const char *path, uint64_t ct_len, struct outfile *out, bool *input_error)
{
	uint8_t mac_iv[16] = {0}, mac[16], stored[16], iv[16], hcopy[ENC_HEADER_LEN];
	unsigned int alg = hdr[OFF_MODE] == ENC_MODE_CBC ? SGD_SM4_CBC : SGD_SM4_ECB;
	uint64_t done = 0;
	memcpy(iv, hdr + OFF_IV, 16);
	memcpy(hcopy, hdr, sizeof(hcopy));
	uint8_t *buf = malloc(IO_CHUNK);
	if (!buf)
		return SDR_NOBUFFER;
	int rc = mac_update(sess, kmac, mac_iv, hcopy, sizeof(hcopy), mac);
	while (rc == SDR_OK && done < ct_len) {
		size_t n = ct_len - done >= IO_CHUNK ? IO_CHUNK : (size_t)(ct_len - done);
		bool last = done + n == ct_len;
		if (!read_exact(in, path, buf, n)) {
			*input_error = true;
			rc = SDR_INARGERR;
			break;
		}
		if ((rc = mac_update(sess, kmac, mac_iv, buf, n, mac)) != SDR_OK)
			break;
		if (last) {
			if (!read_exact(in, path, stored, sizeof(stored))) {
				*input_error = true;
				rc = SDR_INARGERR;
				break;
			}
			if (!crypto_memeq(mac, stored, sizeof(mac))) {
				rc = SDR_MACERR;
				break;
			}
		}
		done += n;
		if (!out)
			continue;
		unsigned int outlen;
		if ((rc = SDF_Decrypt(sess, kenc, alg, alg == SGD_SM4_CBC ? iv : NULL, buf,
				      (unsigned int)n, buf, &outlen)) != SDR_OK)
			break;
		if (last) {
			/* PKCS#7: 1..16 bytes, each the pad length. */
			size_t pad = buf[n - 1];
			bool ok = pad >= 1 && pad <= 16;
			for (size_t i = 0; ok && i < pad; i++)
				ok = buf[n - 1 - i] == pad;
			if (!ok) {
				rc = SDR_ENCDATAERR;
				break;
			}
			n -= pad;
		}
		if (out_write(out, buf, n) < 0) {
			*input_error = true;
			rc = SDR_FILEWERR;
		}
	}
	crypto_free_secret(buf, IO_CHUNK);
	return rc;
}

static int cmd_decrypt(const struct args *a)
{
	unsigned int kek;
	if (parse_index("--kek-index", a->kek_index, &kek) < 0)
		return usage(usage_decrypt);
	uint64_t size, ct_len = 0;
	FILE *in = open_regular(a->in, &size);
	if (!in)
		return EXIT_USAGE;
	uint8_t hdr[ENC_HEADER_LEN];
	if (size < ENC_HEADER_LEN || fread(hdr, 1, sizeof(hdr), in) != sizeof(hdr) ||
	    !header_ok(hdr, size, &ct_len)) {
		fclose(in);
		fprintf(stderr, "vsmtool: %s: not a file made by vsmtool encrypt, or damaged\n",
			a->in);
		return sdr_fail(SDR_ENCDATAERR);
	}
	unsigned int file_kek = (unsigned int)get_be(hdr + OFF_KEK_INDEX, 4);
	if (file_kek != kek) {
		fclose(in);
		fprintf(stderr, "vsmtool: %s was encrypted under KEK %u, not %u\n", a->in, file_kek,
			kek);
		return sdr_fail(SDR_KEYERR);
	}
	void *kenc = NULL, *kmac = NULL;
	struct conn c;
	struct outfile out = {0};
	bool input_error = false;
	int rc = conn_open(a, &c);
	if (rc == SDR_OK)
		rc = SDF_ImportKeyWithKEK(c.sess, SGD_SM4_ECB, kek, hdr + OFF_WRAP_ENC, 16, &kenc);
	if (rc == SDR_OK)
		rc = SDF_ImportKeyWithKEK(c.sess, SGD_SM4_ECB, kek, hdr + OFF_WRAP_MAC, 16, &kmac);
	/* First the MAC over the whole file, then decryption, which checks
	 * the MAC again (the file could change in between). */
	if (rc == SDR_OK)
		rc = decrypt_pass(c.sess, kenc, kmac, hdr, in, a->in, ct_len, NULL, &input_error);
	if (rc == SDR_OK && fseek(in, ENC_HEADER_LEN, SEEK_SET) < 0) {
		fprintf(stderr, "vsmtool: %s: %s\n", a->in, strerror(errno));
		input_error = true;
		rc = SDR_INARGERR;
	}
	if (rc == SDR_OK && out_open(a->out, &out) < 0) {
		input_error = true;
		rc = SDR_FILEWERR;
	}
	if (rc == SDR_OK) {
		rc = decrypt_pass(c.sess, kenc, kmac, hdr, in, a->in, ct_len, &out, &input_error);
		if (rc == SDR_OK && out_commit(&out) < 0) {
			input_error = true;
			rc = SDR_FILEWERR;
		} else if (rc != SDR_OK) {
			out_abort(&out);
		}
	}
	conn_close_keys(&c, kenc, kmac);
	fclose(in);
	if (input_error)
		return EXIT_USAGE;
	if (rc == SDR_MACERR)
		fprintf(stderr, "vsmtool: %s: integrity check failed (damaged or altered)\n", a->in);
	return rc == SDR_OK ? EXIT_OK : sdr_fail(rc);
}

static int run_keygen(const struct args *a) { return cmd_keygen(a, false); }
static int run_kekgen(const struct args *a) { return cmd_keygen(a, true); }

int main(int argc, char **argv)
{
	static const struct {
		const char *name;
		int (*run)(const struct args *);
		const char *usage;
		unsigned int allowed, required;
	} cmds[] = {
		{"info", cmd_info, usage_info, 0, 0},
		{"random", cmd_random, usage_random, O_BYTES, O_BYTES},
		{"keygen", run_keygen, usage_keygen, O_INDEX | O_USAGE | O_PASSWORD, O_INDEX},
		{"kek-gen", run_kekgen, usage_kekgen, O_INDEX, O_INDEX},
		{"list", cmd_list, usage_list, 0, 0},
		{"delete", cmd_delete, usage_delete, O_INDEX | O_USAGE, O_INDEX},
		{"pubkey", cmd_pubkey, usage_pubkey, O_INDEX | O_USAGE, O_INDEX},
		{"sign", cmd_sign, usage_sign, O_INDEX | O_IN | O_ID | O_PASSWORD, O_INDEX | O_IN},
		{"verify", cmd_verify, usage_verify, O_INDEX | O_PUBKEY | O_IN | O_SIG | O_ID,
		 O_IN | O_SIG},
		{"encrypt", cmd_encrypt, usage_encrypt, O_KEK_INDEX | O_IN | O_OUT | O_MODE,
		 O_KEK_INDEX | O_IN | O_OUT},
		{"decrypt", cmd_decrypt, usage_decrypt, O_KEK_INDEX | O_IN | O_OUT,
		 O_KEK_INDEX | O_IN | O_OUT},
		{"hash", cmd_hash, usage_hash, O_IN | O_PUBKEY_INDEX | O_ID, O_IN},
	};
	struct args a;
	if (parse_args(argc, argv, &a) < 0)
		return usage(usage_main);
	if (!a.command) {
		if (a.help) {
			fputs(usage_main, stdout);
			return EXIT_OK;
		}
		return usage(usage_main);
	}
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
		if (strcmp(a.command, cmds[i].name) != 0)
			continue;
		if (a.help) {
			fputs(cmds[i].usage, stdout);
			return EXIT_OK;
		}
		unsigned int own = a.given & ~(unsigned int)O_GLOBAL;
		if ((own & ~cmds[i].allowed) || (own & cmds[i].required) != cmds[i].required) {
			fprintf(stderr, "vsmtool: %s: missing or unexpected options\n", a.command);
			return usage(cmds[i].usage);
		}
		/* The three connection flags go together. */
		int nflags = !!a.endpoint + !!a.token_id + !!a.secret_file;
		if (nflags != 0 && nflags != 3) {
			fprintf(stderr, "vsmtool: --endpoint, --token-id and --token-secret-file "
					"go together\n");
			return usage(usage_main);
		}
		return cmds[i].run(&a);
	}
	fprintf(stderr, "vsmtool: unknown command %s\n", a.command);
	return usage(usage_main);
}
