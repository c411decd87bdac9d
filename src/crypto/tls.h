/*
 * tls.h: the TLS side of chsmd's HTTPS server (PROFILE.md §2), kept in the
 * crypto module because only this module includes OpenSSL headers.
 *
 * Guarantees:
 * - A server context speaks TLS 1.2 and TLS 1.3 only, with forward-secret
 *   AEAD cipher suites, no compression, no renegotiation, and treats a
 *   peer's missing close_notify as an ordinary end of stream
 *   (SSL_OP_IGNORE_UNEXPECTED_EOF).
 * - A context is immutable once made, so the worker threads of the server
 *   may all make connections from one context at once.
 * - The self-signed certificate this module makes is ECDSA P-256, not SM2:
 *   standard TLS clients (curl and libcurl on OpenSSL 3.0 among them) cannot
 *   use SM2 certificates. TLS protects the channel; the CHSM's SM2 device key
 *   signs every response at the application layer (PROFILE.md §5), which
 *   also survives a TLS-terminating hop.
 * - Private keys are written with mode 0600 through an atomic, durable write.
 * Nothing here logs. Functions return 0 or a negative errno value.
 */
#ifndef CHSM_CRYPTO_TLS_H
#define CHSM_CRYPTO_TLS_H

#include <stddef.h>

struct bufferevent;
struct event_base;

typedef struct crypto_tls_server_ctx crypto_tls_server_ctx;

/* Largest certificate chain or key PEM file accepted. */
#define CRYPTO_TLS_MAX_PEM_BYTES (256 * 1024)
/* Lowercase hex SHA-256, NUL-terminated. */
#define CRYPTO_TLS_FINGERPRINT_HEX_LEN 64

/* Makes a server context from a PEM certificate chain (leaf first) and the
 * PEM private key that matches the leaf. Returns 0 and sets *ret_ctx;
 * -ENOENT/-EACCES/-EFBIG when a file cannot be read, -EINVAL when a file
 * does not parse or the key does not match the certificate, -ENOMEM. */
int crypto_tls_server_ctx_new(const char *cert_path, const char *key_path,
			      crypto_tls_server_ctx **ret_ctx);
/* Frees the context; connections already made keep their own reference.
 * Accepts NULL. */
void crypto_tls_server_ctx_free(crypto_tls_server_ctx *ctx);

/* Makes a bufferevent on base that runs the server side of a TLS handshake
 * and then carries the decrypted stream, over socket fd (-1 when the fd is
 * given later with bufferevent_setfd, as evhttp does with the bufferevent
 * its bevcb returns). Freeing the bufferevent frees the TLS state and closes
 * the fd. Returns the bufferevent, or NULL when out of memory. */
struct bufferevent *crypto_tls_bufferevent_new(crypto_tls_server_ctx *ctx,
					       struct event_base *base, int fd);

/* ---- the client side (benchmarks and tools that speak to chsmd) ---- */

typedef struct crypto_tls_client_ctx crypto_tls_client_ctx;

/* Makes a client context (TLS 1.2/1.3, the server context's suites and
 * groups). With cacert_path, servers are verified against the PEM CA
 * certificate(s) in that file and against the host given to
 * crypto_tls_client_bufferevent_new; NULL: servers are not verified.
 * Returns 0 and sets *ret_ctx; -ENOENT/-EACCES/-EFBIG when the file cannot
 * be read, -EINVAL when it holds no certificate, -ENOMEM. */
int crypto_tls_client_ctx_new(const char *cacert_path, crypto_tls_client_ctx **ret_ctx);
/* Frees the context. Accepts NULL. */
void crypto_tls_client_ctx_free(crypto_tls_client_ctx *ctx);

/* Makes a bufferevent on base that runs the client side of a TLS handshake
 * with host (an IP literal or a DNS name: sent as SNI when a name, and
 * checked against the certificate when the context verifies) over socket
 * fd, or over the socket bufferevent_socket_connect makes when fd is -1.
 * Freeing the bufferevent frees the TLS state and closes the fd. Returns
 * the bufferevent, or NULL (out of memory, or a host that is empty). */
struct bufferevent *crypto_tls_client_bufferevent_new(crypto_tls_client_ctx *ctx,
						      struct event_base *base, int fd,
						      const char *host);

/* Generates an ECDSA P-256 key and a self-signed X.509 v3 certificate for
 * it, valid from one hour ago for `days` days, subject and issuer
 * CN=common_name, with subjectAltName entries for each of dns_names and
 * ip_addresses (NULL-terminated arrays; either may be NULL). The
 * certificate is its own trust anchor: clients verify it with
 * `curl --cacert cert.pem`. Writes the key (PKCS#8 PEM, mode 0600) and the
 * certificate (PEM, mode 0644), each atomically. Returns 0, -EINVAL (bad
 * name, address or days outside 1..36500), -ENOMEM, -EIO, or the -errno of
 * a failed write; on failure neither file is left half-written. */
int crypto_tls_make_self_signed(const char *key_path, const char *cert_path,
				const char *common_name, const char *const *dns_names,
				const char *const *ip_addresses, int days);

/* Writes into out the lowercase hex SHA-256 of the DER encoding of the first
 * certificate in the PEM file at cert_path (the value browsers and
 * `openssl x509 -fingerprint -sha256` show, without colons), so an operator
 * can compare it out of band. Returns 0, -EINVAL, or a file error. */
int crypto_tls_cert_sha256_fingerprint(const char *cert_path,
				       char out[CRYPTO_TLS_FINGERPRINT_HEX_LEN + 1]);

#endif
