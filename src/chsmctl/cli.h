/*
 * cli.h: chsmctl's command line, separated from the network so that it can
 * be tested on its own: a declarative table of commands (commands.c), the
 * parser that turns argv into a request (method, path, JSON body) or a
 * local action (parse.c), and the usage texts generated from the table
 * (usage.c).
 *
 * Guarantees: argv is only read; every value is checked before any request
 * is made; a body holding a secret (token secret, upload credentials) is
 * wiped when the invocation is freed, and no error message repeats the
 * value of a secret option.
 */
#ifndef CHSMCTL_CLI_H
#define CHSMCTL_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* How an option's value(s) become JSON at the option's field. */
enum cli_opt_kind {
	OPT_STRING,       /* "field": "V" */
	OPT_STRINGS,      /* repeatable: "field": ["V", ...] */
	OPT_UINT,         /* "field": N, 0..max */
	OPT_HEX64,        /* "field": 64 hex digits, lower-cased (an SM3) */
	OPT_CHOICE,       /* "field": one of choices ("a|b|c") */
	OPT_FLAG_TRUE,    /* no value; "field": true when given */
	OPT_FLAG_FALSE,   /* no value; "field": false when given, true when not */
	OPT_HEADERS,      /* repeatable "Name: value": "field": {"Name": "value"} */
	OPT_INTERFACES,   /* repeatable "name=N,address=CIDR[,gateway=G]": array */
	OPT_SECRET_FILE,  /* "field": base64 of the file's raw bytes (a secret) */
	OPT_PUBKEY_FILE,  /* "field": the SubjectPublicKeyInfo PEM of a key file */
	OPT_LOCAL,        /* a value for chsmctl itself, not sent */
};

#define OPTF_REQUIRED    0x1u  /* must be given (once its group is used) */
#define OPTF_EMPTY_ARRAY 0x2u  /* OPT_STRINGS: "field": [] when not given */

struct cli_opt {
	const char *name;      /* without the leading "--" */
	enum cli_opt_kind kind;
	const char *field;     /* dotted path in the body, e.g. "network.port" */
	unsigned flags;
	unsigned group;        /* 0: none; n: given together or not at all */
	uint64_t max;          /* OPT_UINT: largest value; repeatable: most values */
	const char *choices;   /* OPT_CHOICE */
	const char *metavar;
	const char *help;
};

enum cli_action {
	CLI_REQUEST,  /* send method/path/body */
	CLI_KEYGEN,   /* generate a platform key pair (no CHSM needed) */
	CLI_ENROLL,   /* enroll --key's public key with an enrollment code */
	CLI_HELP,     /* print the usage of help_group / cmd and exit 0 */
	CLI_DRIFT,    /* move a VSM to another CHSM (chsm_client_drift) */
};

/* Most options one command has. */
#define CLI_MAX_CMD_OPTS 24

#define CMD_ID      0x01u  /* one positional VSM ID, substituted for {id} */
#define CMD_TASK_ID 0x02u  /* one positional task ID, substituted for {id} */
#define CMD_BODY    0x04u  /* sends a JSON object; accepts --body */
#define CMD_ASYNC   0x08u  /* answers with a task; --callback-url, --wait */
#define CMD_NOKEY   0x10u  /* needs no platform key */
#define CMD_NOURL   0x20u  /* needs no CHSM at all */
#define CMD_SECRET  0x40u  /* the body may hold a secret */

struct cli_command {
	const char *group;          /* NULL: top level; "chsm", "vsm", "task" */
	const char *name;
	enum cli_action action;
	const char *method;
	const char *path;           /* e.g. "/vsms/{id}/start" */
	unsigned flags;
	const struct cli_opt *opts; /* terminated by an entry with name NULL */
	const char *summary;
};

/* The command table, terminated by an entry with name NULL. */
extern const struct cli_command cli_commands[];
/* The groups, in the order usage lists them, NULL-terminated. */
extern const char *const cli_groups[];
/* The global options (field unused), terminated by name NULL. */
extern const struct cli_opt cli_global_opts[];
/* --body JSON, offered by commands with CMD_BODY. */
extern const struct cli_opt cli_body_opt;
/* --callback-url URL, offered by commands with CMD_ASYNC. */
extern const struct cli_opt cli_callback_opt;

struct cli_globals {
	const char *url;                 /* --url or CHSMCTL_URL */
	const char *key;                 /* --key or CHSMCTL_KEY */
	const char *device_fingerprint;  /* --device-fingerprint or env */
	const char *cacert;              /* --cacert or CHSMCTL_CACERT */
	const char *idempotency_key;
	bool insecure;
	bool wait;
	bool json;
	long timeout_ms;                 /* 0: the library's default */
};

struct cli_invocation {
	struct cli_globals g;
	enum cli_action action;
	const struct cli_command *cmd;   /* NULL for top-level or group help */
	const char *help_group;          /* CLI_HELP of a group: its name */
	const char *method;              /* CLI_REQUEST */
	char *path;                      /* CLI_REQUEST: e.g. "/vsms/v1/start" */
	char *body;                      /* CLI_REQUEST: compact JSON or NULL */
	const char *target_id;           /* the positional ID, if any */
	const char *keygen_out;          /* CLI_KEYGEN: --out */
	const char *enrollment_code;     /* CLI_ENROLL: --enrollment-code */
	/* The first value of each of cmd's options (same index as cmd->opts),
	 * NULL when not given; "" for a flag that was given. */
	const char *opt_values[CLI_MAX_CMD_OPTS];
};

/* The value of cmd's option name in inv (see opt_values), or NULL. */
const char *cli_opt_value(const struct cli_invocation *inv, const char *name);

/* Parses chsmctl's argv (argv[0] is the program). Environment variables
 * CHSMCTL_URL, CHSMCTL_KEY, CHSMCTL_DEVICE_FINGERPRINT and CHSMCTL_CACERT
 * fill global options not given on the command line. Returns 0 and fills
 * *ret (CLI_HELP when --help was asked for anywhere), or -EINVAL for a
 * usage error and -ENOMEM, with a one-line message in err (never holding a
 * secret) and, in *ret_scope_cmd and *ret_scope_group, the command or group
 * whose usage should follow the message (both NULL: the top level). The
 * strings of *ret point into argv or the environment, except path and body
 * which cli_invocation_free releases. */
int cli_parse(int argc, char *const *argv, struct cli_invocation *ret, char *err, size_t errlen,
	      const struct cli_command **ret_scope_cmd, const char **ret_scope_group);

/* Releases path and body (the body wiped) and zeroes inv. Accepts NULL. */
void cli_invocation_free(struct cli_invocation *inv);

/* Writes the usage of cmd (when not NULL), else of group (when not NULL),
 * else the top-level usage, to f. */
void cli_usage(FILE *f, const char *group, const struct cli_command *cmd);

/* Makes jansson wipe every block it frees, so that secrets held in JSON
 * values and in its internal buffers do not linger in freed memory. Call
 * once at start, before any other jansson call. */
void cli_wipe_json_memory(void);

#endif
