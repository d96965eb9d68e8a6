#include "cli/util.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

double cli_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

int cli_ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && !strcasecmp(s + a - b, suffix);
}

int cli_is_dir(const char *path)
{
    struct stat s;
    return stat(path, &s) == 0 && S_ISDIR(s.st_mode);
}

int cli_make_dirs(const char *path)
{
    char buf[4096];
    size_t len = strlen(path);
    if (len == 0 || len >= sizeof buf) {
        errno = ENAMETOOLONG;
        return -1;
    }
    memcpy(buf, path, len + 1);
    for (size_t i = 1; i <= len; i++) {
        if (buf[i] != '/' && buf[i] != '\0')
            continue;
        char saved = buf[i];
        buf[i] = '\0';
        if (mkdir(buf, 0777) != 0 && errno != EEXIST)
            return -1;
        buf[i] = saved;
    }
    if (!cli_is_dir(path)) {
        errno = ENOTDIR;
        return -1;
    }
    return 0;
}

void cli_progress(const char *what, const char *unit, int64_t done, int64_t total, double t0)
{
    if (!isatty(2) || total <= 1)
        return;
    double el = cli_now() - t0, eta = done ? el / (double)done * (double)(total - done) : 0;
    int w = 30, fill = (int)(w * done / total);
    fprintf(stderr, "\r%s [", what);
    for (int i = 0; i < w; i++)
        fputc(i < fill ? '=' : ' ', stderr);
    fprintf(stderr, "] %lld/%lld  %.1f %s/s  ETA %.0fs ", (long long)done, (long long)total,
            el > 0 ? (double)done / el : 0.0, unit, eta);
    if (done == total)
        fputc('\n', stderr);
}
