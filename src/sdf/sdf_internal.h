/*
 * sdf_internal.h: the parts of the SDF library (src/sdf) that are not API:
 * configuration, conversions between the SDF structures and the wire or
 * DER forms, and the library-side hash. Shared by the library, vsmtool and
 * the unit tests. Functions return 0 or a negative errno value and write
 * their ret_* / out parameters only on success. Nothing here logs.
 */
#ifndef CHSM_SDF_INTERNAL_H
#define CHSM_SDF_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "crypto/crypto.h"
#include "openchsm/sdf.h"

/* Seconds to establish the TCP connection, and to wait for any read or
 * write on it (an SM2 operation or SM4 over 1 MiB takes milliseconds). */
#define SDF_CONNECT_TIMEOUT_MS 10000
#define SDF_IO_TIMEOUT_MS      60000
/* A configuration file is a few lines. */
#define SDF_CONFIG_MAX_BYTES   4096
#define SDF_HOST_MAX           255
#define SDF_TOKEN_ID_MAX       64
#define SDF_SECRET_MIN         16
#define SDF_SECRET_MAX         64
/* Signer IDs HashInit accepts (crypto_sm2_z's bound on an ID). */
#define SDF_ID_MAX             8190

/* What a device needs to open sessions. The secret is secret. */
struct sdf_config {
	char host[SDF_HOST_MAX + 1];
	char port[6];
	char token_id[SDF_TOKEN_ID_MAX + 1];
	uint8_t secret[SDF_SECRET_MAX];
	size_t secret_len;
};

/* Parses "host:port" or "[v6]:port" (port 1..65535). -EINVAL otherwise. */
int sdf_parse_endpoint(const char *s, char host[SDF_HOST_MAX + 1], char port[6]);
/* Parses the text of a configuration file: lines "key = value" for the
 * keys endpoint, token_id and token_secret_file (each exactly once),
 * blank lines and lines starting with '#'. A relative token_secret_file is
 * taken relative to base_dir (NULL: the working directory). The secret file
 * is read. -EINVAL for malformed text, -EFBIG/-errno for the secret file. */
int sdf_config_parse(const char *text, size_t len, const char *base_dir,
		     struct sdf_config *ret);
/* Loads the file at path (see sdf_config_parse). */
int sdf_config_load_file(const char *path, struct sdf_config *ret);
/* Builds the configuration from the environment: OPENCHSM_SDF_CONFIG if
 * set, else OPENCHSM_SDF_ENDPOINT, OPENCHSM_SDF_TOKEN_ID and
 * OPENCHSM_SDF_TOKEN_SECRET_FILE. */
int sdf_config_from_env(struct sdf_config *ret);
/* Reads a secret file holding SDF_SECRET_MIN..SDF_SECRET_MAX raw bytes. */
int sdf_read_secret_file(const char *path, uint8_t out[SDF_SECRET_MAX], size_t *ret_len);
/* Wipes a configuration. */
void sdf_config_wipe(struct sdf_config *cfg);

/* ---- structure conversions ---- */
/* ECCrefPublicKey <-> 04 || X || Y. -EINVAL unless bits is 256 and the
 * first 32 bytes of x and y are zero / unless point[0] is 4. */
int sdf_pub_to_point(const ECCrefPublicKey *pub, uint8_t point[CRYPTO_SM2_POINT_LEN]);
int sdf_pub_from_point(const uint8_t point[CRYPTO_SM2_POINT_LEN], ECCrefPublicKey *pub);
/* ECCSignature <-> r || s (64 bytes). -EINVAL for values wider than 32 bytes. */
int sdf_sig_to_rs(const ECCSignature *sig, uint8_t rs[64]);
void sdf_sig_from_rs(const uint8_t rs[64], ECCSignature *sig);
/* ECCSignature <-> DER SEQUENCE { r, s }. */
int sdf_sig_to_der(const ECCSignature *sig, uint8_t der[CRYPTO_SM2_SIG_DER_MAX], size_t *ret_len);
int sdf_sig_from_der(const uint8_t *der, size_t len, ECCSignature *sig);
/* ECCCipher <-> GM/T 0009 DER. From DER: the cipher's C has room for
 * max_c bytes; -EINVAL if C2 is longer. *ret_der is malloc'ed. */
int sdf_cipher_to_der(const ECCCipher *c, uint8_t **ret_der, size_t *ret_len);
int sdf_cipher_from_der(const uint8_t *der, size_t len, size_t max_c, ECCCipher *c);

/* ---- the hash of SDF_HashInit/Update/Final ---- */
struct sdf_hash {
	crypto_sm3_ctx *ctx; /* NULL: no hash in progress */
};
/* Starts SM3; with pub, first absorbs Z for pub and id (idlen 0: the
 * default ID). -EINVAL for a bad key or ID. Restarts a hash in progress. */
int sdf_hash_init(struct sdf_hash *h, const ECCrefPublicKey *pub, const uint8_t *id,
		  size_t idlen);
/* -EPERM when no hash is in progress. */
int sdf_hash_update(struct sdf_hash *h, const void *data, size_t len);
/* Writes the 32-byte digest and ends the hash; -EPERM without one. */
int sdf_hash_final(struct sdf_hash *h, uint8_t out[CRYPTO_SM3_LEN]);
void sdf_hash_clear(struct sdf_hash *h);

#endif
