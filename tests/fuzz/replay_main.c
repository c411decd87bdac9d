/*
 * replay_main.c: the main() of a harness in the normal (non-fuzzing)
 * builds: runs LLVMFuzzerTestOneInput once on each file of the folders (or
 * files) given, so the seed and regression corpora are replayed by every
 * build, the sanitizer build included. Exit 0 when every input ran (a
 * finding aborts); 1 when a folder cannot be read or holds no input.
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int run_file(const char *path)
{
	char *data = NULL;
	size_t len = 0;
	if (chsm_read_file(path, 64 << 20, &data, &len) < 0) {
		fprintf(stderr, "replay: cannot read %s\n", path);
		return -1;
	}
	/* An exact-size copy, so that an overread is seen by ASan. */
	uint8_t *copy = malloc(len ? len : 1);
	if (!copy)
		abort();
	memcpy(copy, data, len);
	free(data);
	LLVMFuzzerTestOneInput(copy, len);
	free(copy);
	return 0;
}

int main(int argc, char **argv)
{
	int ran = 0;
	for (int i = 1; i < argc; i++) {
		struct stat st;
		if (stat(argv[i], &st) < 0) {
			fprintf(stderr, "replay: %s is missing\n", argv[i]);
			return 1;
		}
		if (!S_ISDIR(st.st_mode)) {
			if (run_file(argv[i]) < 0)
				return 1;
			ran++;
			continue;
		}
		struct dirent **names;
		int n = scandir(argv[i], &names, NULL, alphasort);
		if (n < 0)
			return 1;
		for (int k = 0; k < n; k++) {
			char path[4096];
			snprintf(path, sizeof(path), "%s/%s", argv[i], names[k]->d_name);
			if (names[k]->d_name[0] != '.' && stat(path, &st) == 0 && S_ISREG(st.st_mode)) {
				if (run_file(path) < 0)
					return 1;
				ran++;
			}
			free(names[k]);
		}
		free(names);
	}
	printf("replayed %d inputs\n", ran);
	return ran > 0 ? 0 : 1;
}
