/*
 * usage.c: chsmctl's help texts, generated from the command table so that
 * they always list exactly the commands and options the parser accepts.
 */
#include <stdio.h>
#include <string.h>

#include "chsmctl/cli.h"
#include "openchsm/chsm_client.h"

#define WRAP_COLUMN 79
#define HELP_COLUMN 30

static bool has_value(const struct cli_opt *o)
{
	return o->kind != OPT_FLAG_TRUE && o->kind != OPT_FLAG_FALSE;
}

static bool is_repeatable(const struct cli_opt *o)
{
	return o->kind == OPT_STRINGS || o->kind == OPT_HEADERS || o->kind == OPT_INTERFACES;
}

/* "--name META" (and "..." when repeatable) into buf. */
static void opt_words(const struct cli_opt *o, char *buf, size_t size)
{
	snprintf(buf, size, "--%s%s%s%s", o->name, has_value(o) ? " " : "",
		 has_value(o) ? o->metavar : "", is_repeatable(o) ? "..." : "");
}

/* Prints words, wrapping before WRAP_COLUMN with an indent of 8. */
struct wrap {
	FILE *f;
	size_t col;
};

static void wrap_put(struct wrap *w, const char *word)
{
	size_t len = strlen(word);
	if (w->col > 8 && w->col + 1 + len > WRAP_COLUMN) {
		fputs("\n       ", w->f);
		w->col = 7;
	}
	fprintf(w->f, " %s", word);
	w->col += 1 + len;
}

static void command_synopsis(FILE *f, const struct cli_command *c)
{
	struct wrap w = {f, 0};
	char word[512], part[160];
	fputs("usage: chsmctl [GLOBAL OPTIONS]", f);
	w.col = strlen("usage: chsmctl [GLOBAL OPTIONS]");
	if (c->group)
		wrap_put(&w, c->group);
	wrap_put(&w, c->name);
	if (c->flags & CMD_ID)
		wrap_put(&w, "ID");
	if (c->flags & CMD_TASK_ID)
		wrap_put(&w, "TASK_ID");
	for (size_t i = 0; c->opts[i].name; i++) {
		const struct cli_opt *o = &c->opts[i];
		size_t first = 0;
		while (o->group && c->opts[first].group != o->group)
			first++;
		if (o->group && first != i)
			continue; /* printed with the group's first member */
		if (!o->group) {
			opt_words(o, part, sizeof(part));
			snprintf(word, sizeof(word), (o->flags & OPTF_REQUIRED) ? "%s" : "[%s]", part);
			wrap_put(&w, word);
			continue;
		}
		size_t len = (size_t)snprintf(word, sizeof(word), "[");
		for (size_t j = i; c->opts[j].name; j++) {
			if (c->opts[j].group != o->group)
				continue;
			opt_words(&c->opts[j], part, sizeof(part));
			len += (size_t)snprintf(word + len, sizeof(word) - len,
						(c->opts[j].flags & OPTF_REQUIRED) ? "%s%s" : "%s[%s]",
						len > 1 ? " " : "", part);
		}
		snprintf(word + len, sizeof(word) - len, "]");
		wrap_put(&w, word);
	}
	if (c->flags & CMD_ASYNC) {
		opt_words(&cli_callback_opt, part, sizeof(part));
		snprintf(word, sizeof(word), "[%s]", part);
		wrap_put(&w, word);
	}
	if (c->flags & CMD_BODY)
		wrap_put(&w, "[--body JSON]");
	fputc('\n', f);
}

/* "  words    help", the help wrapped at WRAP_COLUMN and aligned at
 * HELP_COLUMN; words that do not fit before it get a line of their own. */
static void help_row(FILE *f, const char *words, const char *help)
{
	size_t col;
	if (strlen(words) + 2 >= HELP_COLUMN) {
		fprintf(f, "  %s\n%*s", words, HELP_COLUMN, "");
	} else {
		fprintf(f, "  %-*s", HELP_COLUMN - 2, words);
	}
	col = HELP_COLUMN;
	for (const char *h = help; *h;) {
		size_t len = strcspn(h, " ");
		if (col > HELP_COLUMN && col + 1 + len > WRAP_COLUMN) {
			fprintf(f, "\n%*s", HELP_COLUMN, "");
			col = HELP_COLUMN;
		} else if (col > HELP_COLUMN) {
			fputc(' ', f);
			col++;
		}
		fprintf(f, "%.*s", (int)len, h);
		col += len;
		h += len;
		while (*h == ' ')
			h++;
	}
	fputc('\n', f);
}

static void opt_line(FILE *f, const struct cli_opt *o)
{
	char words[160];
	opt_words(o, words, sizeof(words));
	help_row(f, words, o->help);
}

static void command_usage(FILE *f, const struct cli_command *c)
{
	command_synopsis(f, c);
	fprintf(f, "\n%c%s.\n", c->summary[0] >= 'a' && c->summary[0] <= 'z'
				       ? c->summary[0] - 'a' + 'A' : c->summary[0],
		c->summary + 1);
	if (c->method)
		fprintf(f, "Interface: %s %s%s\n", c->method, CHSM_CLIENT_API_BASE, c->path);
	bool any = c->opts[0].name || (c->flags & (CMD_ASYNC | CMD_BODY));
	if (any)
		fputs("\nOptions:\n", f);
	for (size_t i = 0; c->opts[i].name; i++)
		opt_line(f, &c->opts[i]);
	if (c->flags & CMD_ASYNC)
		opt_line(f, &cli_callback_opt);
	if (c->flags & CMD_BODY)
		opt_line(f, &cli_body_opt);
	if (c->flags & CMD_ASYNC)
		fputs("\nAnswers with a task; with --wait, follows it to its end.\n", f);
	if (c->action == CLI_DRIFT)
		fputs("\nPrints one line per step (name, outcome, milliseconds) on stderr and,\n"
		      "when done, a JSON summary on stdout. Exit status: 0 the target runs\n"
		      "with the source's stateDigest; 1 a CHSM error, failed task or network\n"
		      "failure; 2 usage error; 3 refused, nothing changed; 4 the target does\n"
		      "not hold the source's state.\n",
		      f);
	fputs("\nGlobal options: see 'chsmctl --help'.\n", f);
}

static void command_row(FILE *f, const struct cli_command *c, bool with_group)
{
	char words[96];
	snprintf(words, sizeof(words), "%s%s%s%s", with_group && c->group ? c->group : "",
		 with_group && c->group ? " " : "", c->name,
		 (c->flags & CMD_ID) ? " ID" : (c->flags & CMD_TASK_ID) ? " TASK_ID" : "");
	help_row(f, words, c->summary);
}

static void group_usage(FILE *f, const char *group)
{
	fprintf(f, "usage: chsmctl [GLOBAL OPTIONS] %s COMMAND [OPTIONS]\n\nCommands:\n", group);
	for (const struct cli_command *c = cli_commands; c->name; c++)
		if (c->group && strcmp(c->group, group) == 0)
			command_row(f, c, false);
	fprintf(f, "\nRun 'chsmctl %s COMMAND --help' for a command's options.\n", group);
}

static void top_usage(FILE *f)
{
	fputs("usage: chsmctl [GLOBAL OPTIONS] COMMAND [ARGS...]\n\n"
	      "Manages a GM/T 0088-2020 cloud HSM (CHSM) from the platform side.\n\n"
	      "Commands:\n",
	      f);
	for (const struct cli_command *c = cli_commands; c->name; c++)
		if (!c->group)
			command_row(f, c, false);
	for (size_t g = 0; cli_groups[g]; g++) {
		fputc('\n', f);
		for (const struct cli_command *c = cli_commands; c->name; c++)
			if (c->group && strcmp(c->group, cli_groups[g]) == 0)
				command_row(f, c, true);
	}
	fputs("\nGlobal options:\n", f);
	for (size_t i = 0; cli_global_opts[i].name; i++)
		opt_line(f, &cli_global_opts[i]);
	fputs("\nRun 'chsmctl COMMAND --help' for a command's options.\n"
	      "Exit status: 0 success; 1 the CHSM answered an error, a task failed, or the\n"
	      "CHSM could not be reached or authenticated; 2 usage or input error.\n",
	      f);
}

void cli_usage(FILE *f, const char *group, const struct cli_command *cmd)
{
	if (cmd)
		command_usage(f, cmd);
	else if (group)
		group_usage(f, group);
	else
		top_usage(f);
}
