/*
 * fuzz_sdf_config.c: the configuration file of the SDF library
 * (src/sdf/config.c: "key = value" lines naming the endpoint, the token id
 * and a secret file, relative to the file's folder) over arbitrary text,
 * with a folder that holds a raw secret ("secret") and a base64 one
 * ("secret.b64"), so that valid files load completely.
 * Checks: an accepted configuration has a host, a port of 1..65535 in
 * decimal, a token id and a secret.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fuzz_common.h"
#include "sdf_internal.h"

static const char *dir;

static void setup(void)
{
	dir = fuzz_tmpdir("sdf");
	char path[300];
	snprintf(path, sizeof(path), "%s/secret", dir);
	FILE *f = fopen(path, "w");
	if (!f || fputs("0123456789abcdef0123456789abcdef", f) < 0 || fclose(f) != 0)
		abort();
	snprintf(path, sizeof(path), "%s/secret.b64", dir);
	f = fopen(path, "w");
	if (!f || fputs("MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=\n", f) < 0 || fclose(f) != 0)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!dir)
		setup();
	struct sdf_config cfg;
	memset(&cfg, 0, sizeof(cfg));
	if (sdf_config_parse((const char *)data, size, dir, &cfg) == 0) {
		char *end;
		long port = strtol(cfg.port, &end, 10);
		if (!cfg.host[0] || *end || port < 1 || port > 65535 || !cfg.token_id[0] ||
		    cfg.secret_len == 0)
			abort();
	}
	sdf_config_wipe(&cfg);
	/* The endpoint syntax alone, on the same bytes. */
	char text[300], host[SDF_HOST_MAX + 1], port[6];
	size_t n = size < sizeof(text) - 1 ? size : sizeof(text) - 1;
	memcpy(text, data, n);
	text[n] = '\0';
	(void)sdf_parse_endpoint(text, host, port);
	return 0;
}
