#include "core/atomic_file.h"
#include "core/error.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

optvq_status optvq_atomic_open(optvq_atomic_file *f, const char *path)
{
    memset(f, 0, sizeof *f);
    if (strlen(path) >= sizeof f->final_path)
        return optvq_fail(OPTVQ_ERR_INVALID_ARG, "%.200s...: path too long", path);
    strcpy(f->final_path, path);
    snprintf(f->temp_path, sizeof f->temp_path, "%s.tmp.%ld", path, (long)getpid());
    f->fp = fopen(f->temp_path, "wb");
    if (!f->fp)
        return optvq_fail(OPTVQ_ERR_IO, "%s: cannot create: %s", path, strerror(errno));
    return OPTVQ_OK;
}

optvq_status optvq_atomic_commit(optvq_atomic_file *f)
{
    int failed = ferror(f->fp) != 0;
    failed |= fflush(f->fp) != 0;
    failed |= fsync(fileno(f->fp)) != 0;
    int saved = errno;
    failed |= fclose(f->fp) != 0;
    f->fp = NULL;
    if (failed) {
        remove(f->temp_path);
        return optvq_fail(OPTVQ_ERR_IO, "%s: write failed: %s", f->final_path, strerror(saved));
    }
    if (rename(f->temp_path, f->final_path) != 0) {
        saved = errno;
        remove(f->temp_path);
        return optvq_fail(OPTVQ_ERR_IO, "%s: cannot rename into place: %s", f->final_path,
                          strerror(saved));
    }
    return OPTVQ_OK;
}

void optvq_atomic_abort(optvq_atomic_file *f)
{
    if (f->fp) {
        fclose(f->fp);
        f->fp = NULL;
    }
    remove(f->temp_path);
}
