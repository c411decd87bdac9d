/*
 * wipe.c: jansson memory that is wiped when freed. chsmctl puts token
 * secrets and upload credentials into JSON bodies; jansson copies them into
 * its values and into internal buffers while serialising. With this
 * allocator every such block is overwritten before it returns to the heap.
 *
 * Blocks come from malloc itself, so memory jansson hands out (json_dumps)
 * can still be released with plain free() by code that does not know.
 */
#include <malloc.h>
#include <stdlib.h>

#include <jansson.h>

#include "chsmctl/cli.h"
#include "crypto/crypto.h"

static void wiping_free(void *p)
{
	if (p)
		crypto_wipe(p, malloc_usable_size(p));
	free(p);
}

void cli_wipe_json_memory(void)
{
	json_set_alloc_funcs(malloc, wiping_free);
}
