/*
 * version.h: the running program's release version, MAJOR.MINOR.PATCH.
 *
 * One definition, in version.c, from the build's OPENCHSM_VERSION. It sits
 * alone in its object file so that a program may link its own definition
 * instead: the upgrade tests build copies of chsmd and chsm-vsmd that
 * report a higher version (tests/integration/CMakeLists.txt).
 */
#ifndef CHSM_COMMON_VERSION_H
#define CHSM_COMMON_VERSION_H

/* The version this program reports: firmwareVersion, a VSM's version,
 * `chsmd version`. A static string. */
const char *chsm_version(void);

#endif
