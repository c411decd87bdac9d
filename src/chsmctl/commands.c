/*
 * commands.c: every chsmctl command in one table: its words, the interface
 * it calls (PROFILE.md §3) and how each option maps to the request body
 * (PROFILE.md §9). The parser and the usage texts are driven by this table
 * only; adding a command means adding rows here.
 */
#include "chsmctl/cli.h"
#include "common/limits.h"

const char *const cli_groups[] = {"chsm", "vsm", "task", NULL};

const struct cli_opt cli_global_opts[] = {
	{"url", OPT_LOCAL, NULL, 0, 0, 0, NULL, "URL",
	 "CHSM address, https://host:port (env CHSMCTL_URL)"},
	{"key", OPT_LOCAL, NULL, 0, 0, 0, NULL, "FILE",
	 "platform private key, PKCS#8 PEM (env CHSMCTL_KEY)"},
	{"device-fingerprint", OPT_LOCAL, NULL, 0, 0, 0, NULL, "FP",
	 "device key fingerprint read at initialisation (env CHSMCTL_DEVICE_FINGERPRINT)"},
	{"cacert", OPT_LOCAL, NULL, 0, 0, 0, NULL, "FILE",
	 "CA certificate that verifies the CHSM's TLS certificate (env CHSMCTL_CACERT)"},
	{"insecure", OPT_FLAG_TRUE, NULL, 0, 0, 0, NULL, NULL,
	 "talk to the CHSM even though neither FP nor a CA authenticates it"},
	{"idempotency-key", OPT_LOCAL, NULL, 0, 0, 0, NULL, "K",
	 "X-GMT-Idempotency-Key: a repeated request with K is done only once"},
	{"wait", OPT_FLAG_TRUE, NULL, 0, 0, 0, NULL, NULL,
	 "follow an asynchronous task to its end and print the final task"},
	{"timeout", OPT_UINT, NULL, 0, 0, 7 * 24 * 3600, NULL, "SECONDS",
	 "limit of each HTTP exchange and of --wait (default 60 s / none)"},
	{"json", OPT_FLAG_TRUE, NULL, 0, 0, 0, NULL, NULL,
	 "print the whole response envelope instead of its data"},
	{"help", OPT_FLAG_TRUE, NULL, 0, 0, 0, NULL, NULL, "show usage (after any command too)"},
	{0},
};

/* Options shared by several commands. */
#define OPT_IMAGE_URL                                                                   \
	{"url", OPT_STRING, "url", OPTF_REQUIRED, 0, 0, NULL, "URL",                    \
	 "where the CHSM downloads the file from (url)"}
#define OPT_IMAGE_SM3                                                                   \
	{"sm3", OPT_HEX64, "sm3", OPTF_REQUIRED, 0, 0, NULL, "HEX",                     \
	 "SM3 of the whole file, 64 hex digits (sm3)"}
#define OPT_UPLOAD_HEADER                                                               \
	{"header", OPT_HEADERS, "headers", 0, 0, CHSM_MAX_UPLOAD_HEADERS, NULL,         \
	 "'NAME: VALUE'", "header sent with each upload, e.g. Authorization (headers)"}
/* VSM network, as group 1 of create and on its own for set-network. */
#define VSM_NETWORK_OPTS(prefix, req, grp)                                              \
	{"ip", OPT_STRING, prefix "ipAddress", req, grp, 0, NULL, "ADDRESS",            \
	 "VSM service address, IPv4 or IPv6 (" prefix "ipAddress)"},                   \
	{"prefix", OPT_UINT, prefix "prefixLength", req, grp, 128, NULL, "N",           \
	 "network prefix length (" prefix "prefixLength)"},                            \
	{"port", OPT_UINT, prefix "port", req, grp, 65535, NULL, "N",                   \
	 "VSM service port (" prefix "port)"},                                         \
	{"gateway", OPT_STRING, prefix "gateway", 0, grp, 0, NULL, "ADDRESS",           \
	 "default gateway (" prefix "gateway)"}
#define VSM_TOKEN_OPTS(prefix, req, grp)                                                \
	{"token-id", OPT_STRING, prefix "tokenId", req, grp, 0, NULL, "ID",             \
	 "token identifier the tenant's applications present (" prefix "tokenId)"},    \
	{"token-secret-file", OPT_SECRET_FILE, prefix "secret", req, grp, 0, NULL,      \
	 "FILE", "file holding the raw token secret, 16 to 64 bytes (" prefix "secret)"}

/* Offered by every command that sends a body, and by asynchronous ones. */
const struct cli_opt cli_body_opt = {
	"body", OPT_LOCAL, NULL, 0, 0, 0, NULL, "JSON",
	"send this JSON object, with the options given set on top of it; nothing is "
	"required or defaulted then: the CHSM judges"};
const struct cli_opt cli_callback_opt = {
	"callback-url", OPT_STRING, "callbackUrl", 0, 0, 0, NULL, "URL",
	"where the CHSM POSTs the task's end (callbackUrl)"};

static const struct cli_opt no_opts[] = {{0}};

static const struct cli_opt keygen_opts[] = {
	{"out", OPT_LOCAL, NULL, OPTF_REQUIRED, 0, 0, NULL, "FILE",
	 "new file for the key pair (PKCS#8 PEM, mode 0600; never overwritten)"},
	{0},
};

static const struct cli_opt enroll_opts[] = {
	{"enrollment-code", OPT_LOCAL, NULL, OPTF_REQUIRED, 0, 0, NULL, "CODE",
	 "the one-time code the administrator read at initialisation"},
	{0},
};

static const struct cli_opt set_platform_key_opts[] = {
	{"public-key", OPT_PUBKEY_FILE, "publicKey", OPTF_REQUIRED, 0, 0, NULL, "PEM_FILE",
	 "the new platform key: public key or key pair PEM (publicKey)"},
	{0},
};

static const struct cli_opt chsm_network_opts[] = {
	{"hostname", OPT_STRING, "hostname", OPTF_REQUIRED, 0, 0, NULL, "NAME",
	 "host name of the CHSM (hostname)"},
	{"interface", OPT_INTERFACES, "interfaces", OPTF_REQUIRED, 0, CHSM_MAX_NETWORK_INTERFACES,
	 NULL, "name=N,address=CIDR[,gateway=G]", "a network interface, repeatable (interfaces)"},
	{"dns", OPT_STRINGS, "dns", OPTF_EMPTY_ARRAY, 0, CHSM_MAX_DNS_SERVERS, NULL, "ADDRESS",
	 "a DNS server, repeatable (dns; none when not given)"},
	{0},
};

static const struct cli_opt chsm_ntp_opts[] = {
	{"server", OPT_STRINGS, "servers", OPTF_REQUIRED, 0, CHSM_MAX_NTP_SERVERS, NULL, "HOST",
	 "an NTP server, repeatable (servers)"},
	{"disabled", OPT_FLAG_FALSE, "enabled", 0, 0, 0, NULL, NULL,
	 "keep the servers but do not synchronise (enabled: false)"},
	{0},
};

static const struct cli_opt chsm_image_upload_opts[] = {
	{"url", OPT_STRING, "url", OPTF_REQUIRED, 0, 0, NULL, "URL",
	 "https://, http:// or file:// prefix images are PUT under (url)"},
	OPT_UPLOAD_HEADER,
	{0},
};

static const struct cli_opt chsm_log_upload_opts[] = {
	{"url", OPT_STRING, "url", OPTF_REQUIRED, 0, 0, NULL, "URL",
	 "syslog+udp://, syslog+tcp://, https:// or http:// collector (url)"},
	{"level", OPT_CHOICE, "level", OPTF_REQUIRED, 0, 0, "error|warning|info", "LEVEL",
	 "error, warning or info (level)"},
	OPT_UPLOAD_HEADER,
	{0},
};

static const struct cli_opt chsm_import_opts[] = {
	OPT_IMAGE_URL,
	OPT_IMAGE_SM3,
	{"replace-existing", OPT_FLAG_TRUE, "replaceExisting", 0, 0, 0, NULL, NULL,
	 "replace VSMs of the same ID (replaceExisting: true)"},
	{0},
};

static const struct cli_opt url_sm3_opts[] = {
	OPT_IMAGE_URL,
	OPT_IMAGE_SM3,
	{0},
};

static const struct cli_opt chsm_restore_opts[] = {
	OPT_IMAGE_URL,
	OPT_IMAGE_SM3,
	{"allow-other-device", OPT_FLAG_TRUE, "allowOtherDevice", 0, 0, 0, NULL, NULL,
	 "accept a backup made by another CHSM (allowOtherDevice: true)"},
	{0},
};

static const struct cli_opt vsm_network_opts[] = {
	VSM_NETWORK_OPTS("", OPTF_REQUIRED, 0),
	{0},
};

static const struct cli_opt vsm_token_opts[] = {
	VSM_TOKEN_OPTS("", OPTF_REQUIRED, 0),
	{0},
};

static const struct cli_opt vsm_create_opts[] = {
	{"id", OPT_STRING, "vsmId", 0, 0, 0, NULL, "ID",
	 "VSM ID, [A-Za-z0-9][A-Za-z0-9_.-]{0,63} (vsmId; generated when absent)"},
	{"name", OPT_STRING, "name", OPTF_REQUIRED, 0, 0, NULL, "NAME", "display name (name)"},
	VSM_NETWORK_OPTS("network.", OPTF_REQUIRED, 0), /* the CHSM requires network */
	VSM_TOKEN_OPTS("token.", OPTF_REQUIRED, 2),
	{"max-keys", OPT_UINT, "resources.maxKeys", 0, 0, UINT32_MAX, NULL, "N",
	 "most keys the VSM may hold (resources.maxKeys)"},
	{"max-sessions", OPT_UINT, "resources.maxSessions", 0, 0, UINT32_MAX, NULL, "N",
	 "most concurrent sessions (resources.maxSessions)"},
	{"memory-mib", OPT_UINT, "resources.memoryMiB", 0, 0, UINT32_MAX, NULL, "N",
	 "memory limit in MiB (resources.memoryMiB)"},
	{"start", OPT_FLAG_TRUE, "start", 0, 0, 0, NULL, NULL, "start the VSM once created (start)"},
	{0},
};

/* drift: two CHSMs, each with the trust options of the global ones. */
#define DRIFT_SIDE_OPTS(side, what)                                                     \
	{side "-key", OPT_LOCAL, NULL, 0, 0, 0, NULL, "FILE",                           \
	 "platform key for the " what " CHSM (default: --key)"},                         \
	{side "-device-fingerprint", OPT_LOCAL, NULL, 0, 0, 0, NULL, "FP",              \
	 "device key fingerprint of the " what " CHSM"},                                 \
	{side "-cacert", OPT_LOCAL, NULL, 0, 0, 0, NULL, "FILE",                        \
	 "CA certificate for the " what " CHSM's TLS (default: --cacert)"}

static const struct cli_opt drift_opts[] = {
	{"from", OPT_LOCAL, NULL, OPTF_REQUIRED, 0, 0, NULL, "URL",
	 "the source CHSM, https://host:port"},
	{"vsm", OPT_LOCAL, NULL, OPTF_REQUIRED, 0, 0, NULL, "ID", "the source VSM"},
	{"to", OPT_LOCAL, NULL, OPTF_REQUIRED, 0, 0, NULL, "URL",
	 "the target CHSM, https://host:port (same security domain)"},
	{"target-vsm", OPT_LOCAL, NULL, OPTF_REQUIRED, 0, 0, NULL, "ID",
	 "the target VSM: stopped and holding no keys"},
	{"image", OPT_LOCAL, NULL, OPTF_REQUIRED, 1, 0, NULL, "URL",
	 "an earlier image of the source VSM, used when the source CHSM does not answer"},
	{"sm3", OPT_LOCAL, NULL, OPTF_REQUIRED, 1, 0, NULL, "HEX",
	 "SM3 of the whole image file, 64 hex digits"},
	{"image-cacert", OPT_LOCAL, NULL, 0, 0, 0, NULL, "FILE",
	 "CA certificate for an https --image (default: the system's)"},
	{"move-network", OPT_FLAG_TRUE, NULL, 0, 0, 0, NULL, NULL,
	 "give the target the source's network (refused while the address answers)"},
	{"stop-source", OPT_FLAG_TRUE, NULL, 0, 0, 0, NULL, NULL,
	 "stop a running source VSM first (else a running source is refused)"},
	DRIFT_SIDE_OPTS("from", "source"),
	DRIFT_SIDE_OPTS("to", "target"),
	{0},
};

#define BODY (CMD_BODY)
#define ASYNC (CMD_BODY | CMD_ASYNC)

const struct cli_command cli_commands[] = {
	{NULL, "keygen", CLI_KEYGEN, NULL, NULL, CMD_NOKEY | CMD_NOURL, keygen_opts,
	 "generate an SM2 platform key pair"},
	{NULL, "enroll", CLI_ENROLL, "PUT", "/auth/platform-key", 0, enroll_opts,
	 "enroll --key's public key with the enrollment code (7.4.2)"},
	{NULL, "fingerprint", CLI_REQUEST, "GET", "/auth/platform-key/fingerprint", CMD_NOKEY,
	 no_opts, "show the configured platform key and the device key (7.4.1)"},
	{NULL, "set-platform-key", CLI_REQUEST, "PUT", "/auth/platform-key", BODY,
	 set_platform_key_opts, "rotate the platform key, signed by the current --key (7.4.2)"},
	{NULL, "drift", CLI_DRIFT, NULL, NULL, CMD_NOKEY | CMD_NOURL, drift_opts,
	 "move a failed VSM into an empty VSM of another CHSM of its domain"},

	{"chsm", "info", CLI_REQUEST, "GET", "/chsm", 0, no_opts, "CHSM details (7.2.1)"},
	{"chsm", "status", CLI_REQUEST, "GET", "/chsm/status", 0, no_opts,
	 "CHSM running status (7.2.2)"},
	{"chsm", "status-all", CLI_REQUEST, "GET", "/chsm/status/all", 0, no_opts,
	 "all status information: CHSM, VSMs, configuration (7.2.3)"},
	{"chsm", "set-network", CLI_REQUEST, "PUT", "/chsm/network", BODY, chsm_network_opts,
	 "configure the CHSM network (7.2.4)"},
	{"chsm", "set-ntp", CLI_REQUEST, "PUT", "/chsm/ntp", BODY, chsm_ntp_opts,
	 "configure NTP (7.2.5)"},
	{"chsm", "set-image-upload", CLI_REQUEST, "PUT", "/chsm/image-upload-address",
	 BODY | CMD_SECRET, chsm_image_upload_opts, "configure the image upload address (7.2.6)"},
	{"chsm", "set-log-upload", CLI_REQUEST, "PUT", "/chsm/log-upload-address",
	 BODY | CMD_SECRET, chsm_log_upload_opts, "configure the log upload address (7.2.7)"},
	{"chsm", "export-image", CLI_REQUEST, "POST", "/chsm/image/export", ASYNC, no_opts,
	 "export a CHSM image to the upload address (7.2.8)"},
	{"chsm", "import-image", CLI_REQUEST, "POST", "/chsm/image/import", ASYNC,
	 chsm_import_opts, "import a CHSM image (7.2.9)"},
	{"chsm", "upgrade", CLI_REQUEST, "POST", "/chsm/upgrade", ASYNC, url_sm3_opts,
	 "upgrade the CHSM with a vendor-signed package (7.2.10)"},
	{"chsm", "reboot", CLI_REQUEST, "POST", "/chsm/reboot", ASYNC, no_opts,
	 "reboot the CHSM (7.2.11)"},
	{"chsm", "backup", CLI_REQUEST, "POST", "/chsm/backup", ASYNC, no_opts,
	 "back up the CHSM to the upload address (7.2.12)"},
	{"chsm", "restore", CLI_REQUEST, "POST", "/chsm/restore", ASYNC, chsm_restore_opts,
	 "restore the CHSM from a backup (7.2.13)"},

	{"vsm", "list", CLI_REQUEST, "GET", "/vsms", 0, no_opts, "list the VSMs"},
	{"vsm", "info", CLI_REQUEST, "GET", "/vsms/{id}", CMD_ID, no_opts, "VSM details (7.3.1)"},
	{"vsm", "status", CLI_REQUEST, "GET", "/vsms/{id}/status", CMD_ID, no_opts,
	 "VSM running status (7.3.2)"},
	{"vsm", "set-network", CLI_REQUEST, "PUT", "/vsms/{id}/network", CMD_ID | BODY,
	 vsm_network_opts, "configure a VSM's network (7.3.3)"},
	{"vsm", "set-token", CLI_REQUEST, "PUT", "/vsms/{id}/token", CMD_ID | BODY | CMD_SECRET,
	 vsm_token_opts, "configure a VSM's token (7.3.4)"},
	{"vsm", "export-image", CLI_REQUEST, "POST", "/vsms/{id}/image/export", CMD_ID | ASYNC,
	 no_opts, "export a VSM image to the upload address (7.3.5)"},
	{"vsm", "import-image", CLI_REQUEST, "POST", "/vsms/{id}/image/import", CMD_ID | ASYNC,
	 url_sm3_opts, "import a VSM image into a stopped, empty VSM (7.3.6)"},
	{"vsm", "start", CLI_REQUEST, "POST", "/vsms/{id}/start", CMD_ID | ASYNC, no_opts,
	 "start a VSM (7.3.7)"},
	{"vsm", "stop", CLI_REQUEST, "POST", "/vsms/{id}/stop", CMD_ID | ASYNC, no_opts,
	 "stop a VSM (7.3.8)"},
	{"vsm", "restart", CLI_REQUEST, "POST", "/vsms/{id}/restart", CMD_ID | ASYNC, no_opts,
	 "restart a VSM (7.3.9)"},
	{"vsm", "reset", CLI_REQUEST, "POST", "/vsms/{id}/reset", CMD_ID | ASYNC, no_opts,
	 "destroy a VSM's keys and token (7.3.10)"},
	{"vsm", "upgrade", CLI_REQUEST, "POST", "/vsms/{id}/upgrade", CMD_ID | ASYNC, url_sm3_opts,
	 "upgrade a VSM with a vendor-signed package (7.3.11)"},
	{"vsm", "create", CLI_REQUEST, "POST", "/vsms", ASYNC | CMD_SECRET, vsm_create_opts,
	 "create a VSM (7.3.12)"},
	{"vsm", "delete", CLI_REQUEST, "DELETE", "/vsms/{id}", CMD_ID | ASYNC, no_opts,
	 "delete a VSM, zeroising its keys (7.3.13)"},

	{"task", "get", CLI_REQUEST, "GET", "/tasks/{id}", CMD_TASK_ID, no_opts,
	 "show an asynchronous task (with --wait: follow it to its end)"},
	{0},
};
