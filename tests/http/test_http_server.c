/*
 * Tests of the HTTPS server (src/http/server.c) driven from outside: the
 * curl command line and libcurl over TLS with the self-signed certificate
 * of crypto_tls_make_self_signed, and raw loopback sockets for what curl
 * cannot do (pipelining, dribbling, huge Content-Length, idle sockets).
 */
#include <dirent.h>
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include <curl/curl.h>

#include "common/util.h"
#include "crypto/tls.h"
#include "http/server.h"
#include "http_test_util.h"

static struct test_tls tls;

/* A generous bound for anything the server must do "promptly"; never a
 * timing assertion, only a cap on how long a test waits. */
#define WAIT_MS 10000

/* The status curl printed last ("-w '\n%{http_code}'"), 0 if none. */
static int http_code_of(const char *out)
{
	const char *nl = strrchr(out, '\n');
	char *end = NULL;
	long code = strtol(nl ? nl + 1 : out, &end, 10);
	return (end && *end == '\0' && code >= 0 && code < 1000) ? (int)code : 0;
}

/* curl against the test server: `args` are curl options and URL(s) where
 * PORT stands for the port; the output ends with "\n<status>". */
static int curl_tls(http_server *srv, const char *args, char **ret_out)
{
	char prefix[256], port[16], tail[8192], cmd[8704];
	curl_prefix(&tls, prefix, sizeof(prefix));
	snprintf(port, sizeof(port), "%d", http_server_port(srv));
	assert_int_equal(replace_all(args, "PORT", port, tail, sizeof(tail)), 0);
	snprintf(cmd, sizeof(cmd), "%s %s %s", prefix,
		 strstr(args, "-w '") ? "" : "-w '\\n%{http_code}'", tail);
	return run_cmd(cmd, ret_out);
}

static void test_methods_and_target(void **state)
{
	http_server *srv = NULL;
	char *out = NULL, body[256];
	struct http_server_config cfg = {.threads = 2};
	assert_int_equal(test_server_start(&tls, cfg, &srv), 0);
	assert_int_equal(write_body_file(&tls, "b100", 100, body, sizeof(body)), 0);

	const char *target = "/gmt0088/v1/vsms/v1?x=1&y=a%2Fb";
	static const struct {
		const char *method, *opts;
		size_t body_len;
	} cases[] = {
		{"GET", "", 0},
		{"PUT", "-X PUT --data-binary @'FILE'", 100},
		{"POST", "--data-binary @'FILE'", 100},
		{"DELETE", "-X DELETE --data-binary @'FILE'", 100},
		{"PATCH", "-X PATCH --data-binary @'FILE'", 100},
		{"OPTIONS", "-X OPTIONS", 0},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char opts[512], args[1024], want[256];
		assert_int_equal(replace_all(cases[i].opts, "FILE", body, opts, sizeof(opts)), 0);
		snprintf(args, sizeof(args), "%s -H 'X-Test: hello' 'https://127.0.0.1:PORT%s'", opts,
			 target);
		int before = echo_calls();
		assert_int_equal(curl_tls(srv, args, &out), 0);
		assert_int_equal(http_code_of(out), 200);
		assert_int_equal(echo_calls(), before + 1);
		snprintf(want, sizeof(want), "\"method\":\"%s\"", cases[i].method);
		assert_non_null(strstr(out, want));
		assert_non_null(strstr(out, "\"target\":\"/gmt0088/v1/vsms/v1?x=1&y=a%2Fb\""));
		assert_non_null(strstr(out, "\"path\":\"/gmt0088/v1/vsms/v1\""));
		assert_non_null(strstr(out, "\"xTest\":\"hello\""));
		assert_non_null(strstr(out, "\"refusal\":0"));
		assert_non_null(strstr(out, "\"peerSet\":true"));
		snprintf(want, sizeof(want), "\"bodyLen\":%zu", cases[i].body_len);
		assert_non_null(strstr(out, want));
		free(out);
	}

	/* Response headers: the handler's, its content type, keep-alive. */
	assert_int_equal(curl_tls(srv, "-D - -o /dev/null https://localhost:PORT/x", &out), 0);
	assert_non_null(strstr(out, "HTTP/1.1 200"));
	assert_non_null(strstr(out, "X-Echo: yes"));
	assert_non_null(strstr(out, "Content-Type: application/json"));
	assert_null(strstr(out, "Connection: close"));
	free(out);

	/* HEAD reaches the handler; no body comes back. */
	int before = echo_calls();
	assert_int_equal(curl_tls(srv, "-I https://127.0.0.1:PORT/h", &out), 0);
	assert_int_equal(http_code_of(out), 200);
	assert_int_equal(echo_calls(), before + 1);
	assert_null(strstr(out, "\"method\""));
	free(out);
	http_server_stop(srv);
}

static void test_keepalive_and_tls_versions(void **state)
{
	http_server *srv = NULL;
	char *out = NULL;
	struct http_server_config cfg = {0};
	assert_int_equal(test_server_start(&tls, cfg, &srv), 0);

	/* Two requests, one connection. */
	assert_int_equal(curl_tls(srv, "-w '[%{num_connects}]' https://127.0.0.1:PORT/a "
				       "https://127.0.0.1:PORT/b", &out), 0);
	const char *first = strstr(out, "[1]"), *second = strstr(out, "[0]");
	assert_non_null(first);
	assert_non_null(second);
	assert_true(first < second);
	assert_int_equal(count_substr(out, "\"method\":\"GET\""), 2);
	free(out);

	assert_int_equal(curl_tls(srv, "--tlsv1.2 --tls-max 1.2 -w ' verify=%{ssl_verify_result}' "
				       "https://127.0.0.1:PORT/v12", &out), 0);
	assert_non_null(strstr(out, "\"target\":\"/v12\""));
	assert_non_null(strstr(out, "verify=0"));
	free(out);
	assert_int_equal(curl_tls(srv, "--tlsv1.3 -w ' verify=%{ssl_verify_result}' "
				       "https://127.0.0.1:PORT/v13", &out), 0);
	assert_non_null(strstr(out, "\"target\":\"/v13\""));
	assert_non_null(strstr(out, "verify=0"));
	free(out);

	/* The server refuses TLS 1.1 even from a client willing to use it;
	 * the same client gets through with TLS 1.2. */
	char cmd[256];
	static const struct {
		const char *opt;
		int ok;
	} versions[] = {{"-tls1_1", 0}, {"-tls1", 0}, {"-tls1_2", 1}, {"-tls1_3", 1}};
	for (size_t i = 0; i < sizeof(versions) / sizeof(versions[0]); i++) {
		snprintf(cmd, sizeof(cmd),
			 "openssl s_client -connect 127.0.0.1:%d %s -cipher 'DEFAULT:@SECLEVEL=0' "
			 "</dev/null >/dev/null 2>&1",
			 http_server_port(srv), versions[i].opt);
		int rc = run_cmd(cmd, &out);
		free(out);
		if (versions[i].ok)
			assert_int_equal(rc, 0);
		else
			assert_int_not_equal(rc, 0);
	}
	/* A client that does not trust the certificate fails verification
	 * (curl exit 60). */
	snprintf(cmd, sizeof(cmd),
		 "curl -q -s --noproxy '*' --max-time 20 https://127.0.0.1:%d/ 2>/dev/null",
		 http_server_port(srv));
	assert_int_equal(run_cmd(cmd, &out), 60);
	free(out);
	http_server_stop(srv);
}

static void test_body_limit(void **state)
{
	http_server *srv = NULL;
	char *out = NULL, at[256], over[256], big[256], args[1024];
	struct http_server_config cfg = {.max_body = 4096};
	assert_int_equal(test_server_start(&tls, cfg, &srv), 0);
	assert_int_equal(write_body_file(&tls, "at", 4096, at, sizeof(at)), 0);
	assert_int_equal(write_body_file(&tls, "over", 4097, over, sizeof(over)), 0);
	assert_int_equal(write_body_file(&tls, "big", 100000, big, sizeof(big)), 0);

	static const struct {
		const char *opts;
		const char *file;
		int status;
		const char *body_len;
	} cases[] = {
		{"", "at", 200, "4096"},
		{"", "over", 413, "0"},
		{"", "big", 413, "0"},
		{"-H 'Transfer-Encoding: chunked'", "at", 200, "4096"},
		{"-H 'Transfer-Encoding: chunked'", "over", 413, NULL},
		{"-H 'Transfer-Encoding: chunked'", "big", 413, NULL},
		/* The client waits for 100 Continue: answered at once. */
		{"-H 'Expect: 100-continue'", "big", 413, "0"},
		{"-H 'Expect: 100-continue'", "at", 200, "4096"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *file = strcmp(cases[i].file, "at") == 0	    ? at
				   : strcmp(cases[i].file, "over") == 0 ? over
									: big;
		snprintf(args, sizeof(args), "%s --data-binary @'%s' 'https://127.0.0.1:PORT/up?i=%zu'",
			 cases[i].opts, file, i);
		int before = echo_calls();
		assert_int_equal(curl_tls(srv, args, &out), 0);
		assert_int_equal(http_code_of(out), cases[i].status);
		/* Exactly one handler call, which saw the refusal or not. */
		assert_int_equal(echo_calls(), before + 1);
		assert_int_equal(echo_last_refusal(), cases[i].status == 413);
		assert_non_null(strstr(out, cases[i].status == 413 ? "\"refusal\":1" : "\"refusal\":0"));
		assert_non_null(strstr(out, "\"method\":\"POST\""));
		assert_non_null(strstr(out, "\"path\":\"/up\""));
		if (cases[i].body_len) {
			char want[64];
			snprintf(want, sizeof(want), "\"bodyLen\":%s", cases[i].body_len);
			assert_non_null(strstr(out, want));
		}
		free(out);
	}
	http_server_stop(srv);
}

static void test_header_limit(void **state)
{
	http_server *srv = NULL;
	char *out = NULL;
	struct http_server_config cfg = {.max_headers = 2048};
	assert_int_equal(test_server_start(&tls, cfg, &srv), 0);
	char value[3001], args[4096];

	memset(value, 'h', 1000);
	value[1000] = '\0';
	snprintf(args, sizeof(args), "-H 'X-Test: %s' https://127.0.0.1:PORT/small", value);
	assert_int_equal(curl_tls(srv, args, &out), 0);
	assert_int_equal(http_code_of(out), 200);
	free(out);

	memset(value, 'h', 3000);
	value[3000] = '\0';
	snprintf(args, sizeof(args), "-H 'X-Test: %s' https://127.0.0.1:PORT/big 2>/dev/null", value);
	int before = echo_calls();
	int rc = curl_tls(srv, args, &out);
	int code = http_code_of(out);
	/* An error status, or a closed connection (curl fails, code 000). */
	assert_true(code == 400 || code == 431 || (rc != 0 && code == 0));
	assert_int_equal(echo_calls(), before);
	free(out);
	http_server_stop(srv);
}

static void test_config_and_plain_http(void **state)
{
	http_server *srv = NULL;
	struct http_server_config cfg = {.plain_http = true};
	static const char *not_loopback[] = {"0.0.0.0", "192.0.2.1", "::", "10.1.2.3"};
	for (size_t i = 0; i < sizeof(not_loopback) / sizeof(not_loopback[0]); i++) {
		cfg.host = not_loopback[i];
		assert_int_equal(test_server_start(&tls, cfg, &srv), -EINVAL);
	}
	cfg.host = "localhost"; /* literals only */
	assert_int_equal(test_server_start(&tls, cfg, &srv), -EINVAL);

	/* TLS: the files are needed and must hold a matching pair. */
	struct http_server_config tcfg = {.host = "127.0.0.1", .cert_file = tls.cert};
	assert_int_equal(http_server_start(&tcfg, echo_handler, NULL, &srv), -EINVAL);
	tcfg.key_file = "/nonexistent/key.pem";
	assert_int_equal(http_server_start(&tcfg, echo_handler, NULL, &srv), -ENOENT);
	tcfg.key_file = tls.cert; /* not a key */
	assert_int_equal(http_server_start(&tcfg, echo_handler, NULL, &srv), -EINVAL);
	assert_null(srv);

	cfg.host = "127.0.0.1";
	assert_int_equal(test_server_start(&tls, cfg, &srv), 0);
	assert_true(http_server_port(srv) > 0);
	char cmd[256], *out = NULL;
	snprintf(cmd, sizeof(cmd),
		 "curl -q -sS --noproxy '*' --max-time 20 -w '\\n%%{http_code}' "
		 "'http://127.0.0.1:%d/plain?q=1'",
		 http_server_port(srv));
	assert_int_equal(run_cmd(cmd, &out), 0);
	assert_int_equal(http_code_of(out), 200);
	assert_non_null(strstr(out, "\"target\":\"/plain?q=1\""));
	free(out);

	/* The same port cannot be taken by another server. */
	http_server *other = NULL;
	struct http_server_config same = {.host = "127.0.0.1", .port = http_server_port(srv),
					  .plain_http = true};
	assert_int_equal(http_server_start(&same, echo_handler, NULL, &other), -EADDRINUSE);
	http_server_stop(srv);

	/* IPv6 loopback, where the machine has it. */
	cfg.host = "::1";
	int r = test_server_start(&tls, cfg, &srv);
	if (r == 0)
		http_server_stop(srv);
	else
		assert_true(r == -EADDRNOTAVAIL || r == -EAFNOSUPPORT);
}

static void test_response_add_header(void **state)
{
	struct http_response resp;
	memset(&resp, 0, sizeof(resp));
	char long_value[200];
	memset(long_value, 'v', sizeof(long_value) - 1);
	long_value[sizeof(long_value) - 1] = '\0';
	assert_int_equal(http_response_add_header(&resp, "X-Long", long_value), -ENOSPC);
	long_value[159] = '\0';
	assert_int_equal(http_response_add_header(&resp, "X-Long", long_value), 0);
	assert_int_equal(http_response_add_header(&resp, "X-Bad", "a\r\nInjected: 1"), -EINVAL);
	for (int i = 1; i < 8; i++)
		assert_int_equal(http_response_add_header(&resp, "X-N", "v"), 0);
	assert_int_equal(resp.header_count, 8);
	assert_int_equal(http_response_add_header(&resp, "X-Full", "v"), -ENOSPC);
	assert_string_equal(resp.headers[0].value, long_value);
}

/* Sends req on a new connection and reads into buf what comes back until
 * the server closes the connection, which it must. */
static void exchange_until_closed(int port, const char *req, size_t len, char *buf, size_t cap)
{
	bool closed = false;
	int fd = raw_connect(port);
	assert_true(fd >= 0);
	assert_int_equal(raw_send(fd, req, len), 0);
	raw_read(fd, buf, cap, WAIT_MS, &closed);
	close(fd);
	assert_true(closed);
}

/* Raw plain-HTTP exchanges: pipelining, bodies on GET, HEAD, a chunked body
 * one byte at a time, refusals in a pipeline, a huge Content-Length. */
static void test_raw_framing(void **state)
{
	http_server *srv = NULL;
	struct http_server_config cfg = {.plain_http = true, .max_body = 4096, .threads = 1};
	assert_int_equal(test_server_start(&tls, cfg, &srv), 0);
	int port = http_server_port(srv);
	static char buf[65536];
	bool closed;

	/* Pipelined: three requests in one write, one with a GET body. */
	const char *pipelined = "GET /a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"
				"POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
				"GET /c HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
	exchange_until_closed(port, pipelined, strlen(pipelined), buf, sizeof(buf));
	assert_int_equal(count_substr(buf, "HTTP/1.1 200"), 3);
	const char *a = strstr(buf, "\"target\":\"/a\""), *b = strstr(buf, "\"target\":\"/b\""),
		   *c = strstr(buf, "\"target\":\"/c\"");
	assert_true(a && b && c && a < b && b < c);
	assert_non_null(strstr(buf, "\"path\":\"/a\",\"bodyLen\":3"));
	assert_non_null(strstr(buf, "\"path\":\"/b\",\"bodyLen\":5"));

	/* HEAD gets headers only (with the length a GET would get), so the
	 * next response on the connection stays intact. */
	const char *head = "HEAD /h HTTP/1.1\r\nHost: x\r\n\r\n"
			   "GET /g HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
	exchange_until_closed(port, head, strlen(head), buf, sizeof(buf));
	assert_true(strncmp(buf, "HTTP/1.1 200", 12) == 0);
	assert_non_null(strstr(buf, "\r\n\r\nHTTP/1.1 200"));
	assert_int_equal(count_substr(buf, "\"method\":\"HEAD\""), 0);
	assert_int_equal(count_substr(buf, "\"method\":\"GET\""), 1);
	assert_int_equal(count_substr(buf, "Content-Length: "), 2);

	/* A chunked body sent one byte at a time, with a trailer. */
	int fd = raw_connect(port);
	assert_true(fd >= 0);
	const char *chunked = "POST /ch HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
			      "5\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n";
	for (size_t i = 0; chunked[i]; i++)
		assert_int_equal(raw_send(fd, chunked + i, 1), 0);
	raw_read(fd, buf, sizeof(buf), 2000, &closed);
	assert_non_null(strstr(buf, "HTTP/1.1 200"));
	assert_non_null(strstr(buf, "\"bodyLen\":11"));
	close(fd);

	/* Pipelined after two good requests, a chunked body over the limit:
	 * the refusal goes to the third request only, then the connection
	 * closes. */
	static char piped[16384];
	int len = snprintf(piped, sizeof(piped),
			   "GET /p1 HTTP/1.1\r\nHost: x\r\n\r\n"
			   "POST /p2 HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nabcd"
			   "POST /p3 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
			   "800\r\n");
	memset(piped + len, 'c', 0x800);
	len += 0x800;
	len += snprintf(piped + len, sizeof(piped) - (size_t)len, "\r\n801\r\n");
	memset(piped + len, 'd', 0x801);
	len += 0x801;
	len += snprintf(piped + len, sizeof(piped) - (size_t)len,
			"\r\n0\r\n\r\nGET /p4 HTTP/1.1\r\nHost: x\r\n\r\n");
	int before = echo_calls();
	exchange_until_closed(port, piped, (size_t)len, buf, sizeof(buf));
	assert_int_equal(count_substr(buf, "HTTP/1.1 200"), 2);
	assert_int_equal(count_substr(buf, "HTTP/1.1 413"), 1);
	const char *p2 = strstr(buf, "\"target\":\"/p2\",\"path\":\"/p2\",\"bodyLen\":4,\"refusal\":0");
	const char *p3 = strstr(buf, "\"target\":\"/p3\"");
	assert_non_null(p2);
	assert_non_null(p3);
	assert_true(p2 < p3);
	assert_non_null(strstr(p3, "\"refusal\":1"));
	assert_null(strstr(buf, "/p4"));
	assert_int_equal(echo_calls(), before + 3);

	/* A huge Content-Length: answered 413 through the handler at once,
	 * without waiting for (or storing) the body, then closed. */
	const char *huge = "PUT /huge HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000000\r\n\r\n"
			   "partial body";
	before = echo_calls();
	exchange_until_closed(port, huge, strlen(huge), buf, sizeof(buf));
	assert_non_null(strstr(buf, "HTTP/1.1 413"));
	assert_non_null(strstr(buf, "Connection: close"));
	assert_non_null(strstr(buf, "\"refusal\":1"));
	assert_non_null(strstr(buf, "\"target\":\"/huge\""));
	assert_int_equal(echo_calls(), before + 1);

	/* A request after a refused one on the same connection is dropped:
	 * the connection closes after the 413. */
	fd = raw_connect(port);
	assert_true(fd >= 0);
	const char *after = "POST /big HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n";
	assert_int_equal(raw_send(fd, after, strlen(after)), 0);
	char filler[5000];
	memset(filler, 'z', sizeof(filler));
	assert_int_equal(raw_send(fd, filler, sizeof(filler)), 0);
	const char *next = "GET /next HTTP/1.1\r\nHost: x\r\n\r\n";
	assert_int_equal(raw_send(fd, next, strlen(next)), 0);
	raw_read(fd, buf, sizeof(buf), WAIT_MS, &closed);
	assert_true(closed);
	assert_int_equal(count_substr(buf, "HTTP/1.1 "), 1);
	assert_non_null(strstr(buf, "HTTP/1.1 413"));
	assert_null(strstr(buf, "/next"));
	close(fd);
	http_server_stop(srv);
}

/* Connects, sends data, and tells whether the server closes the
 * connection within WAIT_MS. */
static bool server_closes(int port, const char *data)
{
	int fd = raw_connect(port);
	assert_true(fd >= 0);
	assert_int_equal(raw_send(fd, data, strlen(data)), 0);
	bool closed = raw_wait_closed(fd, WAIT_MS);
	close(fd);
	return closed;
}

static void test_timeouts(void **state)
{
	http_server *srv = NULL, *tsrv = NULL;
	struct http_server_config cfg = {.plain_http = true, .timeout_seconds = 1};
	assert_int_equal(test_server_start(&tls, cfg, &srv), 0);
	int port = http_server_port(srv);

	/* Idle from the start, and idle after a keep-alive request. */
	assert_true(server_closes(port, ""));
	assert_true(server_closes(port, "GET /k HTTP/1.1\r\nHost: x\r\n\r\n"));

	/* Dribbling one byte every 100 ms never completes a request: the
	 * connection is closed although bytes keep coming. */
	int fd = raw_connect(port);
	assert_true(fd >= 0);
	const char *head = "GET /slow HTTP/1.1\r\nHost: x\r\n";
	assert_int_equal(raw_send(fd, head, strlen(head)), 0);
	bool closed = false;
	for (int i = 0; i < WAIT_MS / 100 && !closed; i++) {
		if (raw_send(fd, "X", 1) < 0)
			closed = true;
		else
			closed = raw_wait_closed(fd, 100);
	}
	assert_true(closed);
	close(fd);
	http_server_stop(srv);

	/* TLS: a TCP connection that never starts the handshake. */
	struct http_server_config tcfg = {.timeout_seconds = 1};
	assert_int_equal(test_server_start(&tls, tcfg, &tsrv), 0);
	assert_true(server_closes(http_server_port(tsrv), ""));
	http_server_stop(tsrv);
}

static void test_connection_cap(void **state)
{
	http_server *srv = NULL;
	struct http_server_config cfg = {.max_connections = 4, .threads = 1};
	assert_int_equal(test_server_start(&tls, cfg, &srv), 0);
	int port = http_server_port(srv), fds[4];
	for (int i = 0; i < 4; i++) {
		fds[i] = raw_connect(port);
		assert_true(fds[i] >= 0);
	}
	int fifth = raw_connect(port);
	assert_true(fifth >= 0);
	assert_true(raw_wait_closed(fifth, WAIT_MS));
	close(fifth);
	/* The four are still open. */
	for (int i = 0; i < 4; i++)
		assert_false(raw_wait_closed(fds[i], 0));

	/* Once one closes, a new connection is served again. */
	close(fds[0]);
	char *out = NULL;
	int code = 0;
	int64_t deadline = chsm_monotonic_ms() + WAIT_MS;
	while (code != 200 && chsm_monotonic_ms() < deadline) {
		curl_tls(srv, "https://127.0.0.1:PORT/again 2>/dev/null", &out);
		code = http_code_of(out);
		free(out);
		if (code != 200)
			usleep(50 * 1000);
	}
	assert_int_equal(code, 200);
	for (int i = 1; i < 4; i++)
		close(fds[i]);
	http_server_stop(srv);
}

struct load_arg {
	int port;
	int thread;
	int ok;
};

static size_t collect(char *data, size_t size, size_t nmemb, void *userp)
{
	size_t n = size * nmemb, *len = userp;
	*len += n;
	return n;
}

static void *load_thread(void *p)
{
	struct load_arg *arg = p;
	CURL *h = curl_easy_init();
	if (!h)
		return NULL;
	struct curl_slist *hdrs = curl_slist_append(NULL, "Expect:");
	for (int i = 0; i < 25; i++) {
		char url[128], body[64];
		size_t got = 0;
		long code = 0;
		snprintf(url, sizeof(url), "https://127.0.0.1:%d/load/%d/%d", arg->port, arg->thread,
			 i);
		snprintf(body, sizeof(body), "{\"n\":%d}", i);
		curl_easy_setopt(h, CURLOPT_URL, url);
		curl_easy_setopt(h, CURLOPT_CAINFO, tls.cert);
		curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
		curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
		curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, collect);
		curl_easy_setopt(h, CURLOPT_WRITEDATA, &got);
		curl_easy_setopt(h, CURLOPT_TIMEOUT, 60L);
		curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
		if (curl_easy_perform(h) == CURLE_OK &&
		    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code) == CURLE_OK && code == 200 &&
		    got > 0)
			arg->ok++;
	}
	curl_slist_free_all(hdrs);
	curl_easy_cleanup(h);
	return NULL;
}

static void test_concurrent_requests(void **state)
{
	http_server *srv = NULL;
	struct http_server_config cfg = {.threads = 2};
	assert_int_equal(test_server_start(&tls, cfg, &srv), 0);
	pthread_t threads[8];
	struct load_arg args[8];
	int before = echo_calls();
	for (int i = 0; i < 8; i++) {
		args[i] = (struct load_arg){.port = http_server_port(srv), .thread = i};
		assert_int_equal(pthread_create(&threads[i], NULL, load_thread, &args[i]), 0);
	}
	int ok = 0;
	for (int i = 0; i < 8; i++) {
		pthread_join(threads[i], NULL);
		ok += args[i].ok;
	}
	assert_int_equal(ok, 200);
	assert_int_equal(echo_calls(), before + 200);
	http_server_stop(srv);
}

static void test_start_stop_repeatedly(void **state)
{
	for (int round = 0; round < 8; round++) {
		http_server *srv = NULL;
		struct http_server_config cfg = {.plain_http = (round % 2) == 1, .threads = 2};
		assert_int_equal(test_server_start(&tls, cfg, &srv), 0);
		int port = http_server_port(srv);
		/* Leave connections open across the stop: one idle, one with a
		 * partial request, one served and kept alive. */
		int idle = raw_connect(port), partial = raw_connect(port), served = -1;
		assert_true(idle >= 0 && partial >= 0);
		assert_int_equal(raw_send(partial, "POST / HTTP/1.1\r\n", 17), 0);
		if (cfg.plain_http) {
			static char buf[4096];
			bool closed;
			served = raw_connect(port);
			assert_true(served >= 0);
			const char *get = "GET /s HTTP/1.1\r\nHost: x\r\n\r\n";
			assert_int_equal(raw_send(served, get, strlen(get)), 0);
			raw_read(served, buf, sizeof(buf), 1000, &closed);
			assert_non_null(strstr(buf, "HTTP/1.1 200"));
		} else {
			char *out = NULL;
			assert_int_equal(curl_tls(srv, "https://127.0.0.1:PORT/r", &out), 0);
			assert_int_equal(http_code_of(out), 200);
			free(out);
		}
		http_server_stop(srv);
		/* Everything was closed by the stop. */
		assert_true(raw_wait_closed(idle, WAIT_MS));
		assert_true(raw_wait_closed(partial, WAIT_MS));
		close(idle);
		close(partial);
		if (served >= 0) {
			assert_true(raw_wait_closed(served, WAIT_MS));
			close(served);
		}
	}
	http_server_stop(NULL);
}

/* Threads of this process, from /proc/self/task. */
static int thread_count(void)
{
	DIR *d = opendir("/proc/self/task");
	assert_non_null(d);
	int n = 0;
	for (struct dirent *e; (e = readdir(d)) != NULL;)
		n += e->d_name[0] != '.';
	closedir(d);
	return n;
}

/* threads = 0 starts one loop per core, but at least 16 (handlers may wait
 * for the disk), at most 64. */
static void test_default_threads(void **state)
{
	long cores = sysconf(_SC_NPROCESSORS_ONLN);
	int expect = cores < 16 ? 16 : cores > 64 ? 64 : (int)cores;
	int before = thread_count();
	http_server *srv = NULL;
	struct http_server_config cfg = {.plain_http = true};
	assert_int_equal(test_server_start(&tls, cfg, &srv), 0);
	assert_int_equal(thread_count() - before, expect);
	http_server_stop(srv);
	assert_int_equal(thread_count(), before);
}

static void test_self_signed_certificate(void **state)
{
	struct stat st;
	assert_int_equal(stat(tls.key, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	char fp[CRYPTO_TLS_FINGERPRINT_HEX_LEN + 1];
	assert_int_equal(crypto_tls_cert_sha256_fingerprint(tls.cert, fp), 0);
	assert_int_equal(strlen(fp), 64);
	assert_true(chsm_str_charset(fp, 64, NULL));

	/* The same value as OpenSSL's own fingerprint. */
	char cmd[512], *out = NULL;
	snprintf(cmd, sizeof(cmd),
		 "openssl x509 -in '%s' -noout -fingerprint -sha256 | tr -d ':' | "
		 "tr 'A-F' 'a-f' | sed 's/.*=//'", tls.cert);
	assert_int_equal(run_cmd(cmd, &out), 0);
	assert_memory_equal(out, fp, 64);
	free(out);
	snprintf(cmd, sizeof(cmd), "openssl x509 -in '%s' -noout -text", tls.cert);
	assert_int_equal(run_cmd(cmd, &out), 0);
	assert_non_null(strstr(out, "DNS:localhost"));
	assert_non_null(strstr(out, "IP Address:127.0.0.1"));
	assert_non_null(strstr(out, "IP Address:0:0:0:0:0:0:0:1"));
	assert_non_null(strstr(out, "CA:FALSE"));
	assert_non_null(strstr(out, "prime256v1"));
	assert_non_null(strstr(out, "Version: 3"));
	free(out);
	/* It verifies as its own trust anchor, also in strict mode. */
	snprintf(cmd, sizeof(cmd),
		 "openssl verify -x509_strict -purpose sslserver -CAfile '%s' '%s' 2>&1",
		 tls.cert, tls.cert);
	assert_int_equal(run_cmd(cmd, &out), 0);
	free(out);

	char key2[160], cert2[160];
	snprintf(key2, sizeof(key2), "%s/k2.pem", tls.dir);
	snprintf(cert2, sizeof(cert2), "%s/c2.pem", tls.dir);
	const char *bad_ip[] = {"300.1.1.1", NULL}, *bad_dns[] = {"a b", NULL};
	assert_int_equal(crypto_tls_make_self_signed(key2, cert2, "x", NULL, bad_ip, 1), -EINVAL);
	assert_int_equal(crypto_tls_make_self_signed(key2, cert2, "x", bad_dns, NULL, 1), -EINVAL);
	assert_int_equal(crypto_tls_make_self_signed(key2, cert2, "x", NULL, NULL, 0), -EINVAL);
	assert_int_equal(crypto_tls_make_self_signed(key2, cert2, "", NULL, NULL, 1), -EINVAL);
	assert_int_equal(access(key2, F_OK), -1);

	/* A key that does not match the certificate is refused. */
	assert_int_equal(crypto_tls_make_self_signed(key2, cert2, "other", NULL, NULL, 1), 0);
	crypto_tls_server_ctx *ctx = NULL;
	assert_int_equal(crypto_tls_server_ctx_new(tls.cert, key2, &ctx), -EINVAL);
	assert_int_equal(crypto_tls_server_ctx_new(cert2, key2, &ctx), 0);
	crypto_tls_server_ctx_free(ctx);
	crypto_tls_server_ctx_free(NULL);
	assert_int_equal(crypto_tls_server_ctx_new("/nonexistent", key2, &ctx), -ENOENT);
}

static int setup(void **state)
{
	return test_tls_setup(&tls) == 0 ? 0 : -1;
}

static int teardown(void **state)
{
	test_tls_teardown(&tls);
	return 0;
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN);
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
		return 1;
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_self_signed_certificate),
		cmocka_unit_test(test_response_add_header),
		cmocka_unit_test(test_methods_and_target),
		cmocka_unit_test(test_keepalive_and_tls_versions),
		cmocka_unit_test(test_body_limit),
		cmocka_unit_test(test_header_limit),
		cmocka_unit_test(test_config_and_plain_http),
		cmocka_unit_test(test_raw_framing),
		cmocka_unit_test(test_timeouts),
		cmocka_unit_test(test_connection_cap),
		cmocka_unit_test(test_concurrent_requests),
		cmocka_unit_test(test_start_stop_repeatedly),
		cmocka_unit_test(test_default_threads),
	};
	int r = cmocka_run_group_tests(tests, setup, teardown);
	curl_global_cleanup();
	return r;
}
