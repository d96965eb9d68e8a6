#include "core/atomic_file.h"
#include "core/error.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>
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

int optvq_make_dirs(const char *path)
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
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode)) {
        errno = ENOTDIR;
        return -1;
    }
    return 0;
}

optvq_status optvq_atomic_write_text(const char *path, const char *text)
{
    optvq_atomic_file f;
    OPTVQ_TRY(optvq_atomic_open(&f, path));
    fputs(text, f.fp);
    fputc('\n', f.fp);
    return optvq_atomic_commit(&f);
}
