/*
 * report.c: the checker's results and the table it prints, one part per
 * profile section, each check pass, FAIL or skip, with the evidence of a
 * failure (request, expected, got) or the reason for a skip.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conform/conform.h"

static const char *const section_title[CF_NSECTIONS] = {
	[CF_S3] = "§3 methods and URLs",
	[CF_S4] = "§4 authorisation categories",
	[CF_S5] = "§5 authentication information",
	[CF_S6] = "§6 status information",
	[CF_S7] = "§7 callbacks and tasks",
	[CF_S8] = "§8 running states",
	[CF_S9] = "§9 interfaces",
	[CF_S10] = "§10 images and packages",
	[CF_SA] = "Appendix A codes",
};

void cf_add(struct cf *cf, enum cf_section s, enum cf_outcome o, const char *name,
	    const char *fmt, ...)
{
	if (cf->nresults == cf->capresults) {
		size_t cap = cf->capresults ? cf->capresults * 2 : 128;
		struct cf_result *n = realloc(cf->results, cap * sizeof(*n));
		if (!n)
			return;
		cf->results = n;
		cf->capresults = cap;
	}
	struct cf_result *r = &cf->results[cf->nresults++];
	r->section = s;
	r->outcome = o;
	r->name = strdup(name);
	r->evidence = NULL;
	if (fmt) {
		va_list ap;
		va_start(ap, fmt);
		if (vasprintf(&r->evidence, fmt, ap) < 0)
			r->evidence = NULL;
		va_end(ap);
	}
	if (cf->verbose)
		fprintf(stderr, "[%s] %s\n", o == CF_PASS ? "pass" : o == CF_FAIL ? "FAIL" : "skip",
			name);
}

/* What was received, for evidence. */
static void got(const struct cf_resp *r, char *out, size_t len)
{
	if (r->status == 0)
		snprintf(out, len, "no answer: %s", r->transport);
	else
		snprintf(out, len, "HTTP %ld, body %.400s%s%s%s%s", r->status,
			 r->body ? r->body : "", r->env_problem[0] ? "; envelope: " : "",
			 r->env_problem, r->sig_problem[0] ? "; signature: " : "", r->sig_problem);
}

static bool expect_ok(const struct cf_resp *r, int code, int http)
{
	return r->status == http && r->code == code && !r->env_problem[0] && !r->sig_problem[0];
}

bool cf_expect(struct cf *cf, enum cf_section s, const char *name, const struct cf_resp *r,
	       int code, int http)
{
	if (expect_ok(r, code, http)) {
		cf_add(cf, s, CF_PASS, name, NULL);
		return true;
	}
	char g[1024];
	got(r, g, sizeof(g));
	cf_add(cf, s, CF_FAIL, name, "request: %s | expected: code %d, HTTP %d, a signed envelope | got: %s",
	       r->what, code, http, g);
	return false;
}

static bool type_ok(const json_t *v, char t)
{
	switch (t) {
	case 's': return json_is_string(v);
	case 'i': return json_is_integer(v);
	case 'n': return json_is_number(v);
	case 'b': return json_is_boolean(v);
	case 'o': return json_is_object(v);
	case 'a': return json_is_array(v);
	case 'S': return json_is_string(v) || json_is_null(v);
	case 'I': return json_is_integer(v) || json_is_null(v);
	case 'O': return json_is_object(v) || json_is_null(v);
	case 'A': return json_is_array(v) || json_is_null(v);
	}
	return false;
}

char *cf_shape(const json_t *obj, const char *spec)
{
	char *copy = strdup(spec), *save = NULL, *out = NULL;
	if (!copy)
		return strdup("out of memory");
	for (char *item = strtok_r(copy, " ", &save); item; item = strtok_r(NULL, " ", &save)) {
		char *colon = strrchr(item, ':');
		if (!colon || !colon[1])
			continue;
		*colon = '\0';
		const json_t *v = obj;
		char *psave = NULL;
		char path[256];
		snprintf(path, sizeof(path), "%s", item);
		for (char *part = strtok_r(path, ".", &psave); part && v;
		     part = strtok_r(NULL, ".", &psave))
			v = json_is_object(v) ? json_object_get(v, part) : NULL;
		if (!v || !type_ok(v, colon[1])) {
			char *dump = v ? json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
			if (asprintf(&out, "field %s: expected %c, got %s", item, colon[1],
				     dump ? dump : "(absent)") < 0)
				out = strdup("field mismatch");
			free(dump);
			break;
		}
	}
	free(copy);
	return out;
}

bool cf_expect_shape(struct cf *cf, enum cf_section s, const char *name,
		     const struct cf_resp *r, int code, int http, const char *spec)
{
	if (!expect_ok(r, code, http))
		return cf_expect(cf, s, name, r, code, http);
	char *bad = cf_shape(r->data, spec);
	if (!bad) {
		cf_add(cf, s, CF_PASS, name, NULL);
		return true;
	}
	cf_add(cf, s, CF_FAIL, name, "request: %s | expected: data fields %s | got: %s | body %.400s",
	       r->what, spec, bad, r->body ? r->body : "");
	free(bad);
	return false;
}

void cf_left_changed(struct cf *cf, const char *what)
{
	size_t n = strlen(cf->left_changed);
	snprintf(cf->left_changed + n, sizeof(cf->left_changed) - n, "%s%s", n ? "; " : "", what);
}

size_t cf_report(const struct cf *cf)
{
	size_t pass = 0, fail = 0, skip = 0;
	for (int s = 0; s < CF_NSECTIONS; s++) {
		size_t n = 0;
		for (size_t i = 0; i < cf->nresults; i++)
			n += cf->results[i].section == (enum cf_section)s;
		if (!n)
			continue;
		printf("\n== %s ==\n", section_title[s]);
		for (size_t i = 0; i < cf->nresults; i++) {
			const struct cf_result *r = &cf->results[i];
			if (r->section != (enum cf_section)s)
				continue;
			const char *o = r->outcome == CF_PASS ? "pass" : r->outcome == CF_FAIL ? "FAIL" : "skip";
			printf("  %-4s  %s\n", o, r->name);
			if (r->evidence && r->outcome != CF_PASS)
				printf("        %s\n", r->evidence);
			pass += r->outcome == CF_PASS;
			fail += r->outcome == CF_FAIL;
			skip += r->outcome == CF_SKIP;
		}
	}
	printf("\nleft changed on the device: %s\n",
	       cf->left_changed[0] ? cf->left_changed : "nothing");
	printf("conformance: %zu passed, %zu failed, %zu skipped\n", pass, fail, skip);
	return fail;
}

void cf_results_free(struct cf *cf)
{
	for (size_t i = 0; i < cf->nresults; i++) {
		free(cf->results[i].name);
		free(cf->results[i].evidence);
	}
	free(cf->results);
	cf->results = NULL;
	cf->nresults = cf->capresults = 0;
}
