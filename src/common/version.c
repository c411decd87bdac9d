/* version.c: the build's version (see version.h: keep this file alone). */
#include "common/version.h"

const char *chsm_version(void)
{
	return OPENCHSM_VERSION;
}
