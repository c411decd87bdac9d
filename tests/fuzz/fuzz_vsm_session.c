/*
 * fuzz_vsm_session.c: the server side of the VSM service protocol
 * (src/vsm/session.c, with the codec of src/vsmp) in-process: a real
 * engine over a real store (in /dev/shm, or $TMPDIR), serving one end of
 * a socket pair on a thread of its own; the harness is the client.
 *
 * Input: byte 0 bit 0 set: the harness first authenticates properly
 * (HELLO, AUTH with the VSM's token), so the rest reaches the handlers of
 * the message table; clear: the rest is what an unauthenticated peer
 * sends. The rest is written as is, then the harness closes its sending
 * side and reads every answer until the server closes.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/util.h"
#include "crypto/crypto.h"
#include "fuzz_common.h"
#include "store/store.h"
#include "vsm/session.h"
#include "vsm/stats.h"
#include "vsmp/vsmp.h"

#define VSM_ID   "fuzz-vsm"
#define TOKEN_ID "fuzz-token"

static const uint8_t token_secret[32] = "fuzz-token-secret-0123456789abc";
static vsm_engine *engine;

static void setup(void)
{
	const char *dir = fuzz_tmpdir("vsm");
	char db[300], stats_path[300];
	snprintf(db, sizeof(db), "%s/chsm.db", dir);
	snprintf(stats_path, sizeof(stats_path), "%s/stats.json", dir);
	uint8_t master[STORE_MASTER_KEY_LEN] = {1};
	chsm_store *st;
	vsm_stats *stats;
	struct store_vsm v = {.id = VSM_ID, .name = "f", .state = "running", .max_keys = 8,
			      .max_sessions = 4, .memory_mib = 64};
	if (store_open(db, master, &st) < 0 || store_vsm_insert(st, &v) < 0 ||
	    store_vsm_token_set(st, VSM_ID, TOKEN_ID, token_secret, sizeof(token_secret),
				chsm_now_ms()) < 0 ||
	    vsm_stats_new(stats_path, &stats) < 0)
		abort();
	struct vsm_engine_config cfg = {.vsm_id = VSM_ID, .store = st, .max_keys = 8,
					.stats = stats};
	if (vsm_engine_new(&cfg, &engine) < 0)
		abort();
	/* The store and the files live until the process ends. */
}

struct serve_arg {
	int fd;
	struct sockaddr_in peer;
};

static void *serve(void *p)
{
	struct serve_arg *a = p;
	vsm_engine_serve(engine, a->fd, (const struct sockaddr *)&a->peer, sizeof(a->peer));
	shutdown(a->fd, SHUT_RDWR);
	return NULL;
}

static bool read_full(int fd, uint8_t *buf, size_t n)
{
	for (size_t done = 0; done < n;) {
		ssize_t got = read(fd, buf + done, n - done);
		if (got <= 0)
			return false;
		done += (size_t)got;
	}
	return true;
}

static void write_full(int fd, const void *buf, size_t n)
{
	for (size_t done = 0; done < n;) {
		ssize_t w = send(fd, (const uint8_t *)buf + done, n - done, MSG_NOSIGNAL);
		if (w <= 0)
			return;
		done += (size_t)w;
	}
}

/* Reads one frame; its payload (up to cap bytes) into buf. */
static bool read_frame(int fd, struct vsmp_header *h, uint8_t *buf, size_t cap)
{
	uint8_t hb[VSMP_HEADER_LEN];
	return read_full(fd, hb, sizeof(hb)) && vsmp_header_decode(hb, (uint32_t)cap, h) == 0 &&
	       read_full(fd, buf, h->length);
}

/* HELLO, then AUTH with the token: true when the server accepted. */
static bool authenticate(int fd)
{
	uint8_t buf[512], cnonce[VSMP_NONCE_LEN] = {7}, proof[VSMP_PROOF_LEN];
	struct vsmp_header h;
	struct vsmp_reader rd;
	size_t n;
	if (!read_frame(fd, &h, buf, sizeof(buf)) || h.type != VSMP_HELLO)
		return false;
	vsmp_reader_init(&rd, buf, h.length);
	(void)vsmp_get_u32(&rd);
	const uint8_t *snonce = vsmp_get_bytes(&rd, VSMP_NONCE_LEN, &n);
	if (!snonce || n != VSMP_NONCE_LEN ||
	    vsmp_client_proof(token_secret, sizeof(token_secret), snonce, cnonce,
			      (const uint8_t *)TOKEN_ID, strlen(TOKEN_ID), proof) < 0)
		return false;
	struct vsmp_writer w;
	vsmp_writer_begin(&w, VSMP_AUTH, 1, 0);
	vsmp_put_bytes(&w, TOKEN_ID, strlen(TOKEN_ID));
	vsmp_put_bytes(&w, cnonce, sizeof(cnonce));
	vsmp_put_bytes(&w, proof, sizeof(proof));
	if (vsmp_writer_end(&w) < 0)
		abort();
	write_full(fd, w.buf, w.len);
	vsmp_writer_free(&w);
	return read_frame(fd, &h, buf, sizeof(buf)) && h.status == VSMP_SDR_OK;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint32_t counter;
	if (!engine)
		setup();
	if (size < 1)
		return 0;
	bool auth = data[0] & 1;
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		abort();
	/* Unauthenticated inputs come from addresses of their own, so the
	 * per-address delay after a failed AUTH never blocks the next input's
	 * good AUTH (from 127.0.0.1). */
	struct serve_arg a = {.fd = sv[1], .peer = {.sin_family = AF_INET}};
	a.peer.sin_addr.s_addr = auth ? htonl(0x7f000001u) : htonl(0x0a000000u | (++counter & 0xffffff));
	pthread_t t;
	if (pthread_create(&t, NULL, serve, &a) != 0)
		abort();
	if (!auth || authenticate(sv[0])) {
		write_full(sv[0], data + 1, size - 1);
	}
	shutdown(sv[0], SHUT_WR);
	uint8_t sink[65536];
	while (read(sv[0], sink, sizeof(sink)) > 0)
		;
	pthread_join(t, NULL);
	close(sv[0]);
	close(sv[1]);
	return 0;
}
