/*
 * limits.h: every limit OpenCHSM enforces, in one place, each with its reason.
 *
 * Limits that apply before a request is authenticated are tighter than the
 * ones after it: an unauthenticated peer should cost the device little.
 */
#ifndef CHSM_COMMON_LIMITS_H
#define CHSM_COMMON_LIMITS_H

/* --- HTTP transport (PROFILE.md §2) --- */
/* Request body: the profile refuses anything over 1 MiB with 1006. */
#define CHSM_MAX_BODY_BYTES            (1024 * 1024)
/* Request line plus all headers: signed requests need well under 4 KiB. */
#define CHSM_MAX_HEADER_BYTES          (16 * 1024)
/* Concurrent TLS connections: bounds memory (~40 KiB each) and fds. */
#define CHSM_MAX_CONNECTIONS           1024
/* Concurrent connections from one client address: one peer cannot take
 * every slot of CHSM_MAX_CONNECTIONS from the others. */
#define CHSM_MAX_CONNECTIONS_PER_PEER  256
/* Seconds a connection may stay idle or dribble one request before close. */
#define CHSM_CONN_TIMEOUT_SECONDS      30
/* Request target (path + query) length; the longest real path is < 100. */
#define CHSM_MAX_TARGET_BYTES          1024

/* --- Authentication (PROFILE.md §5) --- */
/* Accepted clock skew between platform and CHSM, in milliseconds. */
#define CHSM_AUTH_WINDOW_MS            (300 * 1000)
#define CHSM_NONCE_MIN_LEN             16
#define CHSM_NONCE_MAX_LEN             64
#define CHSM_IDEMPOTENCY_KEY_MAX_LEN   64
/* Idempotency keys are honoured this long (24 h). */
#define CHSM_IDEMPOTENCY_TTL_MS        (24LL * 3600 * 1000)
/* Wrong enrollment codes before enrollment locks until the admin resets. */
#define CHSM_ENROLL_MAX_FAILURES       5
/* Enrollment code: 26 base32 characters = 130 bits (profile: >= 120). */
#define CHSM_ENROLL_CODE_CHARS         26
/* Base64 SM2 DER signature: 72 bytes of DER max -> 96 characters. */
#define CHSM_SIGNATURE_B64_MAX         128

/* --- JSON request validation (PROFILE.md §9) --- */
/* Nesting depth of any request body; the deepest real body has 3. */
#define CHSM_JSON_MAX_DEPTH            8
/* Any string field, except PEM keys and URLs which have their own limit. */
#define CHSM_JSON_MAX_STRING           256
#define CHSM_JSON_MAX_URL              2048
#define CHSM_JSON_MAX_PEM              4096
/* Headers attached to upload addresses. */
#define CHSM_MAX_UPLOAD_HEADERS        16
#define CHSM_MAX_NETWORK_INTERFACES    16
#define CHSM_MAX_DNS_SERVERS           8
#define CHSM_MAX_NTP_SERVERS           8

/* --- VSMs and tasks (PROFILE.md §7, §8) --- */
/* Default and ceiling for capacity.maxVsms. */
#define CHSM_DEFAULT_MAX_VSMS          256
#define CHSM_MAX_VSMS_CEILING          4096
#define CHSM_VSM_ID_MAX_LEN            64
#define CHSM_VSM_NAME_MAX_LEN          128
/* Tasks pending or running at once before 3008. */
#define CHSM_MAX_ACTIVE_TASKS          64
/* Finished tasks stay queryable this long (24 h). */
#define CHSM_TASK_RETENTION_MS         (24LL * 3600 * 1000)
/* Callback retries: keep trying for at least this long (profile: 10 min). */
#define CHSM_CALLBACK_RETRY_MS         (15LL * 60 * 1000)
/* Seconds to wait for a VSM process to exit after SIGTERM before SIGKILL. */
#define CHSM_VSM_STOP_GRACE_SECONDS    5
/* Seconds a new VSM process has to report READY before it is killed. */
#define CHSM_VSM_READY_TIMEOUT_SECONDS 5
/* Token secret, decoded bytes (PROFILE.md 7.3.4). */
#define CHSM_TOKEN_SECRET_MIN          16
#define CHSM_TOKEN_SECRET_MAX          64
/* Largest image or backup file an import downloads (to <state_dir>/tmp):
 * 4 GiB, far above a full VSM (10^6 keys of a few hundred bytes). */
#define CHSM_IMAGE_MAX_BYTES           (4ULL * 1024 * 1024 * 1024)

/* --- Platform client (libopenchsm-client, chsmctl) --- */
/* Response body the client accepts: status-all of the largest CHSM
 * (CHSM_MAX_VSMS_CEILING VSMs at a few KiB each) stays far below it. */
#define CHSM_CLIENT_MAX_RESPONSE_BYTES (64 * 1024 * 1024)
/* PEM key files the client reads: an SM2 key is < 1 KiB. */
#define CHSM_CLIENT_MAX_KEY_FILE       (64 * 1024)

#endif
