/*
 * version_next.c: chsm_version() for the test-only copies of chsmd and
 * chsm-vsmd that report a newer version than the build (see
 * common/version.h). Linked before chsm_common, this definition is the one
 * the program uses; the rest of the program is the project's own code.
 */
#include "common/version.h"

const char *chsm_version(void)
{
	return OPENCHSM_NEXT_VERSION;
}
