/* Minimal test harness: TEST(name) { ... } registers a test; CHECK* record
 * failures without stopping; the runner prints "N passed, N failed". */
#ifndef OPTVQ_TEST_H
#define OPTVQ_TEST_H
#include <math.h>
#include <stdint.h>
#include <stdio.h>

typedef void (*test_fn)(void);
void test_register(const char *name, test_fn fn);
extern int test_failures; /* failures in the current test */

#define TEST(name)                                                               \
    static void test_##name(void);                                               \
    __attribute__((constructor)) static void register_##name(void)               \
    {                                                                            \
        test_register(#name, test_##name);                                       \
    }                                                                            \
    static void test_##name(void)

#define CHECK(cond)                                                              \
    do {                                                                         \
        if (!(cond)) {                                                           \
            fprintf(stderr, "    %s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #cond); \
            test_failures++;                                                     \
        }                                                                        \
    } while (0)

#define CHECK_MSG(cond, ...)                                                     \
    do {                                                                         \
        if (!(cond)) {                                                           \
            fprintf(stderr, "    %s:%d: ", __FILE__, __LINE__);                  \
            fprintf(stderr, __VA_ARGS__);                                        \
            fputc('\n', stderr);                                                 \
            test_failures++;                                                     \
        }                                                                        \
    } while (0)

#define CHECK_OK(expr)                                                           \
    do {                                                                         \
        optvq_status st_ = (expr);                                               \
        if (st_ != OPTVQ_OK) {                                                   \
            fprintf(stderr, "    %s:%d: %s -> %s: %s\n", __FILE__, __LINE__, #expr, \
                    optvq_status_string(st_), optvq_last_error());               \
            test_failures++;                                                     \
        }                                                                        \
    } while (0)

/* Max abs and relative error between two float arrays; prints them with `what`. */
typedef struct { double max_abs, max_rel, nmse; } test_diff;
test_diff test_compare(const char *what, const float *got, const float *want, int64_t n);
/* Directory holding reference-state files (tests/ref). */
const char *test_ref_dir(void);
/* Temporary directory unique to this run. */
const char *test_tmp_dir(void);
/* test_tmp_dir()/name (four rotating buffers, so several may be live). */
const char *tmp_path(const char *name);
/* Whole-file helpers: 0 / a malloc'd buffer on success, -1 / NULL on failure. */
int write_bytes(const char *path, const void *data, size_t n);
unsigned char *read_bytes(const char *path, size_t *n);
/* The name-keyed generator the reference scripts share (det_uniform in
 * tools/gen_model_ref.py): element i of tensor `name` is
 * splitmix64(fnv1a64(name) + i + 1) >> 40, / 2^23 - 1, in [-1, 1), exact in float. */
uint64_t test_fnv1a64(const char *s);
double test_det_u(uint64_t base, int64_t i);
void test_det_uniform(float *out, const char *name, int64_t n);

#endif
