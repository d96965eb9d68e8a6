/* Large long-lived buffers (activations, parameters, workspaces) on 2 MiB pages.
 * Each 4 KiB page a process touches for the first time costs a page fault, and on
 * virtual machines faults are slow: a training run's first step spent more time
 * faulting in its buffers than computing. Buffers of 4 MiB and more are aligned to
 * 2 MiB and marked MADV_HUGEPAGE, so the kernel backs them with transparent huge
 * pages where it allows that on request (512x fewer faults); smaller ones are
 * plain 64-byte aligned. Free either with free(). */
#ifndef OPTVQ_CORE_BIGALLOC_H
#define OPTVQ_CORE_BIGALLOC_H
#include <stddef.h>

/* NULL when out of memory or when bytes is 0. */
void *optvq_big_alloc(size_t bytes);
/* The same, zero-filled. */
void *optvq_big_calloc(size_t bytes);
/* Mark an existing page-aligned mapping (mmap) for 2 MiB pages; advice only. */
void optvq_big_advise(void *p, size_t bytes);

#endif
