#include "core/bigalloc.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

enum { HUGE_BYTES = 2 << 20, HUGE_FROM = 4 << 20 };

void optvq_big_advise(void *p, size_t bytes)
{
#ifdef MADV_HUGEPAGE
    if (p && bytes >= HUGE_FROM)
        madvise(p, bytes, MADV_HUGEPAGE); /* advice only: 4 KiB pages still work */
#else
    (void)p;
    (void)bytes;
#endif
}

void *optvq_big_alloc(size_t bytes)
{
    if (bytes == 0 || bytes > SIZE_MAX - HUGE_BYTES)
        return NULL;
    if (bytes < HUGE_FROM)
        return aligned_alloc(64, (bytes + 63) / 64 * 64);
    size_t rounded = (bytes + HUGE_BYTES - 1) / HUGE_BYTES * HUGE_BYTES;
    void *p = aligned_alloc(HUGE_BYTES, rounded);
    optvq_big_advise(p, rounded);
    return p;
}

void *optvq_big_calloc(size_t bytes)
{
    void *p = optvq_big_alloc(bytes);
    if (p)
        memset(p, 0, bytes);
    return p;
}
