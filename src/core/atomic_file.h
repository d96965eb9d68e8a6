/* Files that appear complete or not at all: write to "<path>.tmp.<pid>",
 * fsync, then rename over the destination. */
#ifndef OPTVQ_CORE_ATOMIC_FILE_H
#define OPTVQ_CORE_ATOMIC_FILE_H
#include <stdio.h>
#include "optvq/optvq.h"

typedef struct optvq_atomic_file {
    FILE *fp;
    char final_path[4096];
    char temp_path[4200];
} optvq_atomic_file;

optvq_status optvq_atomic_open(optvq_atomic_file *f, const char *path);
/* Flushes, fsyncs and renames; on any failure removes the temporary file. */
optvq_status optvq_atomic_commit(optvq_atomic_file *f);
/* Discards the temporary file (after an error). */
void optvq_atomic_abort(optvq_atomic_file *f);

/* Writes text plus a final newline to path atomically. */
optvq_status optvq_atomic_write_text(const char *path, const char *text);

/* mkdir -p: 0, or -1 with errno set (ENOTDIR when path is not a folder). */
int optvq_make_dirs(const char *path);

#endif
