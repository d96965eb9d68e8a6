/* Replays, without clang, what the libFuzzer targets of fuzz/ run: every seed
 * in fuzz/corpus/<target>/ (valid files: each must parse) and every input in
 * fuzz/regressions/<target>/ (inputs that once crashed, leaked, hung or
 * exhausted memory, or that were written by hand against a bug: each must
 * now parse or be refused, never crash). The targets' own checks run too:
 * a refusal has a one-line message; consumers (conversions, the quantizer,
 * strict loading, preprocessing) get what the parsers return. `make
 * check-asan` runs this under AddressSanitizer + UBSan. */
#define OPTVQ_FUZZ_NO_ENTRY
#include "../fuzz/fuzz_config.c"
#include "../fuzz/fuzz_idx.c"
#include "../fuzz/fuzz_jpeg.c"
#include "../fuzz/fuzz_multipart.c"
#include "../fuzz/fuzz_npy.c"
#include "../fuzz/fuzz_png.c"
#include "../fuzz/fuzz_pth.c"
#include "../fuzz/fuzz_safetensors.c"

#include "core/error.h"
#include "test.h"

#include <dirent.h>
#include <sys/stat.h>

typedef int (*fuzz_fn)(const uint8_t *, size_t);

static int cmp_names(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Runs fn on every file of fuzz/<kind>/<target>/ (sorted); returns the count
 * and how many parsed (*ok). */
static int replay(const char *kind, const char *target, fuzz_fn fn, int *ok)
{
    char dir[512];
    snprintf(dir, sizeof dir, "fuzz/%s/%s", kind, target);
    *ok = 0;
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    char *names[4096];
    int n = 0;
    for (struct dirent *e; (e = readdir(d)) && n < 4096;)
        if (e->d_name[0] != '.')
            names[n++] = strdup(e->d_name);
    closedir(d);
    qsort(names, (size_t)n, sizeof *names, cmp_names);
    int count = 0;
    for (int i = 0; i < n; i++) {
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        FILE *fp = fopen(path, "rb");
        struct stat sb;
        if (!fp || fstat(fileno(fp), &sb) != 0 || !S_ISREG(sb.st_mode)) {
            if (fp)
                fclose(fp);
            free(names[i]);
            continue;
        }
        size_t len = (size_t)sb.st_size;
        uint8_t *buf = malloc(len ? len : 1);
        size_t got = len ? fread(buf, 1, len, fp) : 0;
        fclose(fp);
        CHECK_MSG(got == len, "cannot read %s", path);
        optvq_clear_error();
        int parsed = fn(buf, got);
        printf("    %-60s %s\n", path, parsed ? "parsed" : optvq_last_error());
        *ok += parsed != 0;
        count++;
        free(buf);
        free(names[i]);
    }
    return count;
}

static void run_target(const char *target, fuzz_fn fn)
{
    int ok, n = replay("corpus", target, fn, &ok);
    CHECK_MSG(n > 0, "fuzz/corpus/%s holds no seeds (run from the repository root)", target);
    CHECK_MSG(ok == n, "%d of the %d seeds of fuzz/corpus/%s do not parse", n - ok, n, target);
    n = replay("regressions", target, fn, &ok);
    printf("    %d regression inputs, %d parsed, %d refused\n", n, ok, n - ok);
}

TEST(fuzz_npy_corpus_and_regressions) { run_target("npy", fuzz_npy); }
TEST(fuzz_safetensors_corpus_and_regressions) { run_target("safetensors", fuzz_safetensors); }
TEST(fuzz_pth_corpus_and_regressions) { run_target("pth", fuzz_pth); }
TEST(fuzz_config_corpus_and_regressions) { run_target("config", fuzz_config); }
TEST(fuzz_idx_corpus_and_regressions) { run_target("idx", fuzz_idx); }
TEST(fuzz_png_corpus_and_regressions) { run_target("png", fuzz_png); }
TEST(fuzz_jpeg_corpus_and_regressions) { run_target("jpeg", fuzz_jpeg); }
TEST(fuzz_multipart_corpus_and_regressions) { run_target("multipart", fuzz_multipart); }

/* The pickle subset executes nothing: every fuzz/regressions/pth/evil-*.pth
 * (a global outside the allowlist, INST/OBJ/NEWOBJ/EXT opcodes, REDUCE of a
 * storage type, OrderedDict with arguments) is refused as malformed, with a
 * message that names the problem. */
TEST(fuzz_pth_pickles_that_run_code_are_refused)
{
    DIR *d = opendir("fuzz/regressions/pth");
    CHECK(d != NULL);
    if (!d)
        return;
    int n = 0;
    for (struct dirent *e; (e = readdir(d));) {
        if (strncmp(e->d_name, "evil-", 5) != 0)
            continue;
        char path[1024];
        snprintf(path, sizeof path, "fuzz/regressions/pth/%s", e->d_name);
        optvq_weights *w = NULL;
        optvq_status st = optvq_weights_load(path, &w);
        const char *msg = optvq_last_error();
        printf("    %-45s %s\n", e->d_name, msg);
        CHECK(st == OPTVQ_ERR_FORMAT && w == NULL);
        CHECK(strstr(msg, "refused") || strstr(msg, "not supported") || strstr(msg, "REDUCE") ||
              strstr(msg, "OrderedDict with arguments"));
        optvq_weights_free(w);
        n++;
    }
    closedir(d);
    CHECK(n >= 8);
}
