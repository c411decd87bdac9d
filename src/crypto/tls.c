/*
 * tls.c: TLS server contexts, TLS bufferevents and self-signed certificates
 * on OpenSSL 3 and libevent's bufferevent_openssl. See tls.h for the
 * guarantees.
 */
#include "crypto/tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "common/util.h"

struct crypto_tls_server_ctx {
	SSL_CTX *ssl_ctx;
};

/* TLS 1.2: ECDHE key exchange and AEAD ciphers only (RSA suites kept for an
 * administrator-installed RSA certificate). TLS 1.3 suites are all AEAD. */
static const char TLS12_CIPHERS[] =
	"ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
	"ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
	"ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";
static const char TLS13_SUITES[] =
	"TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256";
static const char TLS_GROUPS[] = "X25519:P-256:P-384";
static const unsigned char TLS_SESSION_ID_CONTEXT[] = "openchsm";

/* Clears this thread's OpenSSL error queue and returns err. */
static int tls_fail(int err)
{
	ERR_clear_error();
	return err;
}

/* Keys are never encrypted here; refuse instead of prompting on a tty. */
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
	return -1;
}

static int load_chain(SSL_CTX *ssl_ctx, const char *pem, size_t len)
{
	int r = -EINVAL;
	X509 *leaf = NULL, *ca = NULL;
	BIO *bio = BIO_new_mem_buf(pem, (int)len);
	if (!bio) {
		r = -ENOMEM;
		goto out;
	}
	leaf = PEM_read_bio_X509(bio, NULL, no_passphrase, NULL);
	if (!leaf || SSL_CTX_use_certificate(ssl_ctx, leaf) != 1)
		goto out;
	while ((ca = PEM_read_bio_X509(bio, NULL, no_passphrase, NULL)) != NULL) {
		if (SSL_CTX_add0_chain_cert(ssl_ctx, ca) != 1)
			goto out;
		ca = NULL;
	}
	/* The loop ends at the end of the file (no more PEM start line); any
	 * other error is a broken certificate. */
	unsigned long err = ERR_peek_last_error();
	if (ERR_GET_LIB(err) != ERR_LIB_PEM || ERR_GET_REASON(err) != PEM_R_NO_START_LINE)
		goto out;
	r = 0;
out:
	X509_free(ca);
	X509_free(leaf);
	BIO_free(bio);
	ERR_clear_error();
	return r;
}

static int load_key(SSL_CTX *ssl_ctx, const char *pem, size_t len)
{
	int r = -EINVAL;
	EVP_PKEY *pkey = NULL;
	BIO *bio = BIO_new_mem_buf(pem, (int)len);
	if (!bio) {
		r = -ENOMEM;
		goto out;
	}
	pkey = PEM_read_bio_PrivateKey(bio, NULL, no_passphrase, NULL);
	if (!pkey || SSL_CTX_use_PrivateKey(ssl_ctx, pkey) != 1 ||
	    SSL_CTX_check_private_key(ssl_ctx) != 1)
		goto out;
	r = 0;
out:
	EVP_PKEY_free(pkey);
	BIO_free(bio);
	ERR_clear_error();
	return r;
}

/* TLS 1.2 and 1.3, the suites and groups above: both sides. */
static int set_protocols(SSL_CTX *ssl_ctx)
{
	if (SSL_CTX_set_min_proto_version(ssl_ctx, TLS1_2_VERSION) != 1 ||
	    SSL_CTX_set_max_proto_version(ssl_ctx, TLS1_3_VERSION) != 1 ||
	    SSL_CTX_set_cipher_list(ssl_ctx, TLS12_CIPHERS) != 1 ||
	    SSL_CTX_set_ciphersuites(ssl_ctx, TLS13_SUITES) != 1 ||
	    SSL_CTX_set1_groups_list(ssl_ctx, TLS_GROUPS) != 1)
		return tls_fail(-EIO);
	return 0;
}

static int configure(SSL_CTX *ssl_ctx)
{
	if (set_protocols(ssl_ctx) < 0 ||
	    SSL_CTX_set_session_id_context(ssl_ctx, TLS_SESSION_ID_CONTEXT,
					   sizeof(TLS_SESSION_ID_CONTEXT) - 1) != 1)
		return tls_fail(-EIO);
	SSL_CTX_set_options(ssl_ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
					     SSL_OP_IGNORE_UNEXPECTED_EOF |
					     SSL_OP_CIPHER_SERVER_PREFERENCE);
	/* Idle keep-alive connections give their read/write buffers back. */
	SSL_CTX_set_mode(ssl_ctx, SSL_MODE_RELEASE_BUFFERS);
	SSL_CTX_set_verify(ssl_ctx, SSL_VERIFY_NONE, NULL);
	return 0;
}

int crypto_tls_server_ctx_new(const char *cert_path, const char *key_path,
			      crypto_tls_server_ctx **ret_ctx)
{
	int r;
	char *cert_pem = NULL, *key_pem = NULL;
	size_t cert_len = 0, key_len = 0;
	crypto_tls_server_ctx *ctx = NULL;

	if (!cert_path || !key_path || !ret_ctx)
		return -EINVAL;
	r = chsm_read_file(cert_path, CRYPTO_TLS_MAX_PEM_BYTES, &cert_pem, &cert_len);
	if (r < 0)
		goto out;
	r = chsm_read_file(key_path, CRYPTO_TLS_MAX_PEM_BYTES, &key_pem, &key_len);
	if (r < 0)
		goto out;
	ctx = calloc(1, sizeof(*ctx));
	if (!ctx) {
		r = -ENOMEM;
		goto out;
	}
	ctx->ssl_ctx = SSL_CTX_new(TLS_server_method());
	if (!ctx->ssl_ctx) {
		r = tls_fail(-ENOMEM);
		goto out;
	}
	r = configure(ctx->ssl_ctx);
	if (r < 0)
		goto out;
	r = load_chain(ctx->ssl_ctx, cert_pem, cert_len);
	if (r < 0)
		goto out;
	r = load_key(ctx->ssl_ctx, key_pem, key_len);
	if (r < 0)
		goto out;
	*ret_ctx = ctx;
	ctx = NULL;
	r = 0;
out:
	crypto_tls_server_ctx_free(ctx);
	free(cert_pem);
	if (key_pem)
		OPENSSL_clear_free(key_pem, key_len);
	return r;
}

void crypto_tls_server_ctx_free(crypto_tls_server_ctx *ctx)
{
	if (!ctx)
		return;
	SSL_CTX_free(ctx->ssl_ctx);
	free(ctx);
}

struct bufferevent *crypto_tls_bufferevent_new(crypto_tls_server_ctx *ctx,
					       struct event_base *base, int fd)
{
	SSL *ssl = SSL_new(ctx->ssl_ctx);
	if (!ssl) {
		tls_fail(-ENOMEM);
		return NULL;
	}
	/* With BEV_OPT_CLOSE_ON_FREE the bufferevent owns ssl from here on,
	 * including when its creation fails (libevent frees it then). */
	struct bufferevent *bev = bufferevent_openssl_socket_new(
		base, fd, ssl, BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
	if (!bev) {
		ERR_clear_error();
		return NULL;
	}
	/* A peer that closes without close_notify has ended its stream; the
	 * HTTP layer above decides whether a request was cut short. */
	bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
	return bev;
}

/* ---- self-signed certificates ---- */

static bool valid_dns_name(const char *name)
{
	size_t len = strlen(name);
	return len >= 1 && len <= 253 && chsm_str_charset(name, len, ".-") && name[0] != '.' &&
	       name[0] != '-';
}

static bool valid_common_name(const char *cn)
{
	size_t len = strlen(cn);
	if (len < 1 || len > 64) /* ub-common-name */
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)cn[i];
		if (c < 0x20 || c == 0x7f)
			return false;
	}
	return true;
}

/* Appends to names a name of type GEN_DNS or GEN_IPADD holding a copy of
 * data[0..len). */
static int add_general_name(GENERAL_NAMES *names, int type, const void *data, int len)
{
	GENERAL_NAME *gn = GENERAL_NAME_new();
	ASN1_STRING *s = ASN1_STRING_type_new(type == GEN_DNS ? V_ASN1_IA5STRING : V_ASN1_OCTET_STRING);
	if (!gn || !s || ASN1_STRING_set(s, data, len) != 1)
		goto fail;
	GENERAL_NAME_set0_value(gn, type, s);
	s = NULL; /* gn owns it */
	if (sk_GENERAL_NAME_push(names, gn) <= 0)
		goto fail;
	return 0;
fail:
	ASN1_STRING_free(s);
	GENERAL_NAME_free(gn);
	return tls_fail(-ENOMEM);
}

static int add_ip_address(GENERAL_NAMES *names, const char *ip)
{
	unsigned char addr[16];
	if (inet_pton(AF_INET, ip, addr) == 1)
		return add_general_name(names, GEN_IPADD, addr, 4);
	if (inet_pton(AF_INET6, ip, addr) == 1)
		return add_general_name(names, GEN_IPADD, addr, 16);
	return -EINVAL;
}

static int add_subject_alt_names(X509 *x509, const char *const *dns_names,
				 const char *const *ip_addresses)
{
	int r = 0;
	GENERAL_NAMES *names = sk_GENERAL_NAME_new_null();
	if (!names)
		return tls_fail(-ENOMEM);
	for (size_t i = 0; dns_names && dns_names[i]; i++) {
		if (!valid_dns_name(dns_names[i])) {
			r = -EINVAL;
			goto out;
		}
		r = add_general_name(names, GEN_DNS, dns_names[i], (int)strlen(dns_names[i]));
		if (r < 0)
			goto out;
	}
	for (size_t i = 0; ip_addresses && ip_addresses[i]; i++) {
		r = add_ip_address(names, ip_addresses[i]);
		if (r < 0)
			goto out;
	}
	if (sk_GENERAL_NAME_num(names) > 0 &&
	    X509_add1_ext_i2d(x509, NID_subject_alt_name, names, 0, X509V3_ADD_DEFAULT) != 1)
		r = tls_fail(-EIO);
out:
	GENERAL_NAMES_free(names);
	return r;
}

static int add_extension(X509 *x509, int nid, const char *value)
{
	X509V3_CTX v3;
	X509V3_set_ctx(&v3, x509, x509, NULL, NULL, 0);
	X509_EXTENSION *ext = X509V3_EXT_nconf_nid(NULL, &v3, nid, value);
	if (!ext)
		return tls_fail(-EIO);
	int ok = X509_add_ext(x509, ext, -1);
	X509_EXTENSION_free(ext);
	return ok == 1 ? 0 : tls_fail(-EIO);
}

static int set_random_serial(X509 *x509)
{
	unsigned char sn[16];
	if (RAND_bytes(sn, sizeof(sn)) != 1)
		return tls_fail(-EIO);
	sn[0] = (unsigned char)((sn[0] & 0x7f) | 0x40); /* positive, 16 bytes */
	BIGNUM *bn = BN_bin2bn(sn, sizeof(sn), NULL);
	int ok = bn && BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x509)) != NULL;
	BN_free(bn);
	return ok ? 0 : tls_fail(-ENOMEM);
}

/* Builds and signs the certificate for pkey. */
static int build_certificate(EVP_PKEY *pkey, const char *common_name,
			     const char *const *dns_names, const char *const *ip_addresses,
			     int days, X509 **ret_x509)
{
	int r = -EIO;
	X509 *x509 = X509_new();
	if (!x509) {
		r = tls_fail(-ENOMEM);
		goto out;
	}
	X509_NAME *name = X509_get_subject_name(x509);
	if (X509_set_version(x509, X509_VERSION_3) != 1 || set_random_serial(x509) < 0 ||
	    !X509_gmtime_adj(X509_getm_notBefore(x509), -3600) ||
	    !X509_time_adj_ex(X509_getm_notAfter(x509), days, 0, NULL) ||
	    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
				       (const unsigned char *)common_name, -1, -1, 0) != 1 ||
	    X509_set_issuer_name(x509, name) != 1 || X509_set_pubkey(x509, pkey) != 1)
		goto out;
	/* An end-entity certificate that clients pin as its own trust anchor
	 * (OpenSSL, even with -x509_strict, accepts a directly trusted
	 * self-signed leaf). CA:FALSE means a platform that trusts it trusts
	 * this server only: a stolen TLS key cannot mint certificates for
	 * other names. */
	r = add_extension(x509, NID_basic_constraints, "critical,CA:FALSE");
	if (r == 0)
		r = add_extension(x509, NID_key_usage, "critical,digitalSignature");
	if (r == 0)
		r = add_extension(x509, NID_ext_key_usage, "serverAuth");
	if (r == 0)
		r = add_extension(x509, NID_subject_key_identifier, "hash");
	if (r == 0)
		r = add_extension(x509, NID_authority_key_identifier, "keyid:always");
	if (r == 0)
		r = add_subject_alt_names(x509, dns_names, ip_addresses);
	if (r < 0)
		goto out;
	if (X509_sign(x509, pkey, EVP_sha256()) <= 0) {
		r = tls_fail(-EIO);
		goto out;
	}
	*ret_x509 = x509;
	x509 = NULL;
	r = 0;
out:
	X509_free(x509);
	ERR_clear_error();
	return r;
}

/* Writes the PEM of pkey (when given) or of x509 to path. Key
 * material goes through a secure-memory BIO, wiped when freed. */
static int write_pem_file(const char *path, unsigned mode, EVP_PKEY *pkey, X509 *x509)
{
	int r;
	BIO *bio = BIO_new(pkey ? BIO_s_secmem() : BIO_s_mem());
	if (!bio)
		return tls_fail(-ENOMEM);
	int ok = pkey ? PEM_write_bio_PrivateKey(bio, pkey, NULL, NULL, 0, NULL, NULL)
		      : PEM_write_bio_X509(bio, x509);
	char *data = NULL;
	long len = BIO_get_mem_data(bio, &data);
	if (ok != 1 || len <= 0) {
		r = tls_fail(-EIO);
		goto out;
	}
	r = chsm_write_file_atomic(path, data, (size_t)len, mode);
out:
	BIO_free(bio);
	return r;
}

int crypto_tls_make_self_signed(const char *key_path, const char *cert_path,
				const char *common_name, const char *const *dns_names,
				const char *const *ip_addresses, int days)
{
	int r;
	EVP_PKEY *pkey = NULL;
	X509 *x509 = NULL;

	if (!key_path || !cert_path || !common_name || !valid_common_name(common_name) ||
	    days < 1 || days > 36500)
		return -EINVAL;
	pkey = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	if (!pkey) {
		r = tls_fail(-EIO);
		goto out;
	}
	r = build_certificate(pkey, common_name, dns_names, ip_addresses, days, &x509);
	if (r < 0)
		goto out;
	r = write_pem_file(key_path, 0600, pkey, NULL);
	if (r < 0)
		goto out;
	r = write_pem_file(cert_path, 0644, NULL, x509);
out:
	X509_free(x509);
	EVP_PKEY_free(pkey);
	return r;
}

int crypto_tls_cert_sha256_fingerprint(const char *cert_path,
				       char out[CRYPTO_TLS_FINGERPRINT_HEX_LEN + 1])
{
	int r;
	char *pem = NULL;
	size_t len = 0;
	BIO *bio = NULL;
	X509 *x509 = NULL;
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int md_len = 0;

	r = chsm_read_file(cert_path, CRYPTO_TLS_MAX_PEM_BYTES, &pem, &len);
	if (r < 0)
		goto out;
	bio = BIO_new_mem_buf(pem, (int)len);
	if (!bio) {
		r = tls_fail(-ENOMEM);
		goto out;
	}
	x509 = PEM_read_bio_X509(bio, NULL, no_passphrase, NULL);
	if (!x509) {
		r = tls_fail(-EINVAL);
		goto out;
	}
	if (X509_digest(x509, EVP_sha256(), md, &md_len) != 1 || md_len != 32) {
		r = tls_fail(-EIO);
		goto out;
	}
	chsm_hex_encode(md, md_len, out);
	r = 0;
out:
	X509_free(x509);
	BIO_free(bio);
	free(pem);
	return r;
}

/* ---- the client side ---- */

struct crypto_tls_client_ctx {
	SSL_CTX *ssl_ctx;
	bool verify;
};

static int load_trust(SSL_CTX *ssl_ctx, const char *pem, size_t len)
{
	int r = -EINVAL, count = 0;
	X509 *ca = NULL;
	X509_STORE *store = SSL_CTX_get_cert_store(ssl_ctx);
	BIO *bio = BIO_new_mem_buf(pem, (int)len);
	if (!bio || !store) {
		r = -ENOMEM;
		goto out;
	}
	while ((ca = PEM_read_bio_X509(bio, NULL, no_passphrase, NULL)) != NULL) {
		if (X509_STORE_add_cert(store, ca) != 1)
			goto out;
		X509_free(ca);
		ca = NULL;
		count++;
	}
	if (count > 0)
		r = 0;
out:
	X509_free(ca);
	BIO_free(bio);
	ERR_clear_error();
	return r;
}

int crypto_tls_client_ctx_new(const char *cacert_path, crypto_tls_client_ctx **ret_ctx)
{
	int r;
	char *pem = NULL;
	size_t len = 0;
	crypto_tls_client_ctx *ctx = NULL;
	if (!ret_ctx)
		return -EINVAL;
	if (cacert_path &&
	    (r = chsm_read_file(cacert_path, CRYPTO_TLS_MAX_PEM_BYTES, &pem, &len)) < 0)
		goto out;
	ctx = calloc(1, sizeof(*ctx));
	if (!ctx) {
		r = -ENOMEM;
		goto out;
	}
	ctx->ssl_ctx = SSL_CTX_new(TLS_client_method());
	if (!ctx->ssl_ctx) {
		r = tls_fail(-ENOMEM);
		goto out;
	}
	if ((r = set_protocols(ctx->ssl_ctx)) < 0)
		goto out;
	SSL_CTX_set_options(ctx->ssl_ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
						  SSL_OP_IGNORE_UNEXPECTED_EOF);
	if (pem) {
		if ((r = load_trust(ctx->ssl_ctx, pem, len)) < 0)
			goto out;
		SSL_CTX_set_verify(ctx->ssl_ctx, SSL_VERIFY_PEER, NULL);
		ctx->verify = true;
	} else {
		SSL_CTX_set_verify(ctx->ssl_ctx, SSL_VERIFY_NONE, NULL);
	}
	*ret_ctx = ctx;
	ctx = NULL;
	r = 0;
out:
	crypto_tls_client_ctx_free(ctx);
	free(pem);
	return r;
}

void crypto_tls_client_ctx_free(crypto_tls_client_ctx *ctx)
{
	if (!ctx)
		return;
	SSL_CTX_free(ctx->ssl_ctx);
	free(ctx);
}

struct bufferevent *crypto_tls_client_bufferevent_new(crypto_tls_client_ctx *ctx,
						      struct event_base *base, int fd,
						      const char *host)
{
	if (!ctx || !base || !host || !*host)
		return NULL;
	SSL *ssl = SSL_new(ctx->ssl_ctx);
	if (!ssl) {
		tls_fail(-ENOMEM);
		return NULL;
	}
	unsigned char addr[16];
	bool is_ip = inet_pton(AF_INET, host, addr) == 1 || inet_pton(AF_INET6, host, addr) == 1;
	int ok = 1;
	if (!is_ip)
		ok = SSL_set_tlsext_host_name(ssl, host);
	if (ok == 1 && ctx->verify) {
		X509_VERIFY_PARAM *param = SSL_get0_param(ssl);
		ok = is_ip ? X509_VERIFY_PARAM_set1_ip_asc(param, host)
			   : X509_VERIFY_PARAM_set1_host(param, host, 0);
	}
	if (ok != 1) {
		SSL_free(ssl);
		tls_fail(-ENOMEM);
		return NULL;
	}
	struct bufferevent *bev = bufferevent_openssl_socket_new(
		base, fd, ssl, BUFFEREVENT_SSL_CONNECTING, BEV_OPT_CLOSE_ON_FREE);
	if (!bev) {
		ERR_clear_error();
		return NULL;
	}
	bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
	return bev;
}
