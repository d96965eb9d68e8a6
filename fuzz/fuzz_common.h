/* Shared by the libFuzzer targets in fuzz/ and by tests/test_fuzz_regressions.c,
 * which #includes every target (with OPTVQ_FUZZ_NO_ENTRY defined) to replay
 * the seed corpora and the regression inputs without clang.
 *
 * The parsers take paths; fuzz_file() hands them the input through one
 * memfd, as /proc/self/fd/N (a temporary file where memfd is unavailable).
 * fuzz_check_error() enforces the error contract on every failure: a status
 * that is not OK and a non-empty, one-line message. Violations abort(), which
 * the fuzzer reports as a crash. */
#ifndef OPTVQ_FUZZ_COMMON_H
#define OPTVQ_FUZZ_COMMON_H

#include "optvq/optvq.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static int fuzz_fd_ = -1;
static char fuzz_path_[64];

static const char *fuzz_file(const uint8_t *data, size_t size)
{
    if (fuzz_fd_ < 0) {
        fuzz_fd_ = memfd_create("optvq-fuzz", MFD_CLOEXEC);
        if (fuzz_fd_ >= 0) {
            snprintf(fuzz_path_, sizeof fuzz_path_, "/proc/self/fd/%d", fuzz_fd_);
        } else {
            snprintf(fuzz_path_, sizeof fuzz_path_, "/tmp/optvq-fuzz-XXXXXX");
            fuzz_fd_ = mkstemp(fuzz_path_);
            if (fuzz_fd_ < 0)
                abort();
        }
    }
    if (ftruncate(fuzz_fd_, 0) != 0)
        abort();
    size_t done = 0;
    while (done < size) {
        ssize_t n = pwrite(fuzz_fd_, data + done, size - done, (off_t)done);
        if (n <= 0)
            abort();
        done += (size_t)n;
    }
    return fuzz_path_;
}

__attribute__((unused)) static void fuzz_check_error(optvq_status st)
{
    const char *msg = optvq_last_error();
    if (st == OPTVQ_OK || !msg[0]) {
        fprintf(stderr, "fuzz: a failure without a status or a message (status %d)\n", (int)st);
        abort();
    }
    for (const char *p = msg; *p; p++)
        if (*p == '\n' || *p == '\r') {
            fprintf(stderr, "fuzz: the error message is not one line: %s\n", msg);
            abort();
        }
}

/* Reads every float (ASan sees any read outside the buffer); returns a
 * value the compiler cannot drop. */
static volatile float fuzz_sink_;
__attribute__((unused)) static void fuzz_touch_floats(const float *p, int64_t n)
{
    float s = 0;
    for (int64_t i = 0; i < n; i++)
        s += p[i];
    fuzz_sink_ = s;
}

#endif
