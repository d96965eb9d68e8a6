#include "test.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_TESTS 1024
static struct { const char *name; test_fn fn; } tests[MAX_TESTS];
static int n_tests;
int test_failures;

void test_register(const char *name, test_fn fn)
{
    if (n_tests < MAX_TESTS) {
        tests[n_tests].name = name;
        tests[n_tests].fn = fn;
        n_tests++;
    }
}

test_diff test_compare(const char *what, const float *got, const float *want, int64_t n)
{
    test_diff d = {0, 0, 0};
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) {
        double a = got[i], b = want[i], e = fabs(a - b);
        if (!(e <= d.max_abs)) /* also catches NaN */
            d.max_abs = isnan(e) ? INFINITY : e;
        double r = e / (fabs(b) > 1e-6 ? fabs(b) : 1e-6);
        if (r > d.max_rel)
            d.max_rel = r;
        num += (a - b) * (a - b);
        den += b * b;
    }
    d.nmse = den > 0 ? num / den : num;
    printf("    %-40s n=%-8lld max_abs=%.3g max_rel=%.3g nmse=%.3g\n", what, (long long)n, d.max_abs,
           d.max_rel, d.nmse);
    return d;
}

const char *test_ref_dir(void)
{
    const char *d = getenv("OPTVQ_REF_DIR");
    return d ? d : "tests/ref";
}

const char *test_tmp_dir(void)
{
    static char dir[256];
    if (!dir[0]) {
        snprintf(dir, sizeof dir, "/tmp/optvq-test-%ld", (long)getpid());
        char cmd[300];
        snprintf(cmd, sizeof cmd, "mkdir -p %s", dir);
        if (system(cmd) != 0)
            fprintf(stderr, "cannot create %s\n", dir);
    }
    return dir;
}

const char *tmp_path(const char *name)
{
    static char buf[4][512];
    static int slot;
    char *p = buf[slot++ & 3];
    snprintf(p, sizeof buf[0], "%s/%s", test_tmp_dir(), name);
    return p;
}

int write_bytes(const char *path, const void *data, size_t n)
{
    FILE *fp = fopen(path, "wb");
    if (!fp)
        return -1;
    size_t w = n ? fwrite(data, 1, n, fp) : 0;
    return (fclose(fp) == 0 && w == n) ? 0 : -1;
}

unsigned char *read_bytes(const char *path, size_t *n)
{
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return NULL;
    fseek(fp, 0, SEEK_END);
    long len = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    unsigned char *buf = malloc(len > 0 ? (size_t)len : 1);
    if (buf && fread(buf, 1, (size_t)len, fp) != (size_t)len) {
        free(buf);
        buf = NULL;
    }
    fclose(fp);
    *n = (size_t)len;
    return buf;
}

int main(int argc, char **argv)
{
    int passed = 0, failed = 0;
    for (int i = 0; i < n_tests; i++) {
        if (argc > 1) { /* run only tests whose names contain an argument */
            int match = 0;
            for (int a = 1; a < argc; a++)
                match |= strstr(tests[i].name, argv[a]) != NULL;
            if (!match)
                continue;
        }
        test_failures = 0;
        printf("[ RUN  ] %s\n", tests[i].name);
        fflush(stdout);
        tests[i].fn();
        fflush(stdout);
        if (test_failures) {
            printf("[ FAIL ] %s\n", tests[i].name);
            failed++;
        } else {
            printf("[  OK  ] %s\n", tests[i].name);
            passed++;
        }
    }
    if (test_tmp_dir()[0]) {
        char cmd[300];
        snprintf(cmd, sizeof cmd, "rm -rf %s", test_tmp_dir());
        if (system(cmd) != 0)
            fprintf(stderr, "cannot remove %s\n", test_tmp_dir());
    }
    printf("unit: %d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}

uint64_t test_fnv1a64(const char *s)
{
    uint64_t h = 0xCBF29CE484222325ull;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 0x100000001B3ull;
    return h;
}

double test_det_u(uint64_t base, int64_t i)
{
    uint64_t z = base + (uint64_t)(i + 1) * 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return (double)(z >> 40) / (double)(1 << 23) - 1.0;
}

void test_det_uniform(float *out, const char *name, int64_t n)
{
    const uint64_t base = test_fnv1a64(name);
    for (int64_t i = 0; i < n; i++)
        out[i] = (float)test_det_u(base, i);
}
