#include "cli/util.h"
#include "core/atomic_file.h"
#include "core/parallel.h"
#include "cli/args.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

double cli_now(void) { return optvq_now(); }

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

int cli_make_dirs(const char *path) { return optvq_make_dirs(path); }

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

int cli_output_kind(const char *cmd, const char *opt, const char *path, unsigned allowed, cli_out_kind *kind)
{
    static const char *const what[] = {"a .npy file", "a .png/.jpg/.jpeg image", "a folder"};
    size_t len = strlen(path);
    cli_out_kind k;
    if (len == 0) {
        fprintf(stderr, "optvq %s: --%s is empty\n", cmd, opt);
        return -1;
    }
    if (path[len - 1] == '/' || cli_is_dir(path))
        k = CLI_OUT_FOLDER;
    else if (cli_ends_with(path, ".npy"))
        k = CLI_OUT_NPY;
    else if (cli_ends_with(path, ".png") || cli_ends_with(path, ".jpg") || cli_ends_with(path, ".jpeg"))
        k = CLI_OUT_IMAGE;
    else {
        fprintf(stderr,
                "optvq %s: --%s %s: say what to write: a name ending in .npy (array), .png/.jpg/.jpeg "
                "(image), or a folder (an existing one, or a name ending in /)\n",
                cmd, opt, path);
        return -1;
    }
    if (!(allowed & (1u << k))) {
        char list[160] = "";
        for (int i = 0; i < 3; i++)
            if (allowed & (1u << i)) {
                if (list[0])
                    strncat(list, " or ", sizeof list - strlen(list) - 1);
                strncat(list, what[i], sizeof list - strlen(list) - 1);
            }
        fprintf(stderr, "optvq %s: --%s %s is %s; here it must be %s\n", cmd, opt, path, what[k], list);
        return -1;
    }
    *kind = k;
    return 0;
}

int cli_prepare_output(const char *cmd, const char *path, int is_folder)
{
    char dir[4096];
    size_t len = strlen(path);
    if (len >= sizeof dir) {
        fprintf(stderr, "optvq %s: %s: path too long\n", cmd, path);
        return 1;
    }
    memcpy(dir, path, len + 1);
    while (len > 1 && dir[len - 1] == '/')
        dir[--len] = '\0';
    if (!is_folder) {
        char *slash = strrchr(dir, '/');
        if (!slash)
            return 0; /* the current folder */
        if (slash == dir)
            slash[1] = '\0';
        else
            *slash = '\0';
    }
    if (cli_make_dirs(dir) != 0) {
        fprintf(stderr, "optvq %s: %s: cannot create folder %s: %s\n", cmd, path, dir, strerror(errno));
        return 1;
    }
    if (access(dir, W_OK) != 0) {
        fprintf(stderr, "optvq %s: %s: folder %s is not writable: %s\n", cmd, path, dir, strerror(errno));
        return 1;
    }
    return 0;
}

int cli_write_json(const char *cmd, const char *path, cJSON *object)
{
    char *text = cJSON_Print(object);
    cJSON_Delete(object);
    if (!text) {
        fprintf(stderr, "optvq %s: out of memory\n", cmd);
        return 1;
    }
    optvq_status st = optvq_atomic_write_text(path, text);
    free(text);
    if (st != OPTVQ_OK) {
        fprintf(stderr, "optvq %s: %s\n", cmd, optvq_last_error());
        return 1;
    }
    return 0;
}

/* the --precision values, in optvq_precision's order */
static const char *const precision_names[] = {"fp32", "bf16", "bf16-all", NULL};

const char *cli_precision_name(optvq_precision p)
{
    return p >= OPTVQ_PRECISION_FP32 && p <= OPTVQ_PRECISION_BF16_ALL ? precision_names[p] : "?";
}

int cli_set_precision(const char *cmd, const cli_opt *opts, optvq_model *m)
{
    const char *const *names = precision_names;
    int choice = -1;
    if (cli_get_choice(cmd, opts, "precision", names, &choice))
        return 2;
    if (choice < 0)
        return 0;
    if (optvq_model_set_precision(m, (optvq_precision)choice) != OPTVQ_OK) {
        fprintf(stderr, "optvq %s: %s\n", cmd, optvq_last_error());
        return 2;
    }
    if (choice > 0 && !optvq_bf16_native())
        fprintf(stderr, "optvq %s: note: this CPU lacks AVX512-BF16; --precision %s runs a portable kernel "
                        "(the same numbers, slower than fp32)\n", cmd, names[choice]);
    return 0;
}
