#include "cli/args.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static cli_opt *find(cli_opt *opts, const char *name, size_t len)
{
    for (cli_opt *o = opts; o->name; o++)
        if (strlen(o->name) == len && !strncmp(o->name, name, len))
            return o;
    return NULL;
}

int cli_parse(const char *cmd, int argc, char **argv, cli_opt *opts)
{
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (!strcmp(arg, "--help") || !strcmp(arg, "-h"))
            return 1;
        if (strncmp(arg, "--", 2) != 0) {
            fprintf(stderr, "optvq %s: unexpected argument '%s' (see 'optvq %s --help')\n", cmd, arg, cmd);
            return -1;
        }
        const char *name = arg + 2, *eq = strchr(name, '=');
        size_t len = eq ? (size_t)(eq - name) : strlen(name);
        cli_opt *o = find(opts, name, len);
        if (!o) {
            fprintf(stderr, "optvq %s: unknown option '--%.*s' (see 'optvq %s --help')\n", cmd, (int)len, name, cmd);
            return -1;
        }
        if (!o->takes_value) {
            if (eq) {
                fprintf(stderr, "optvq %s: option '--%s' takes no value\n", cmd, o->name);
                return -1;
            }
            o->value = "1";
        } else if (eq) {
            o->value = eq + 1;
        } else if (i + 1 < argc) {
            o->value = argv[++i];
        } else {
            fprintf(stderr, "optvq %s: option '--%s' needs a value\n", cmd, o->name);
            return -1;
        }
    }
    return 0;
}

const char *cli_get(const cli_opt *opts, const char *name)
{
    for (const cli_opt *o = opts; o->name; o++)
        if (!strcmp(o->name, name))
            return o->value;
    return NULL;
}

int cli_get_int(const char *cmd, const cli_opt *opts, const char *name, int64_t lo, int64_t hi, int64_t *out)
{
    const char *v = cli_get(opts, name);
    if (!v)
        return 0;
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (errno || end == v || *end || x < lo || x > hi) {
        fprintf(stderr, "optvq %s: --%s must be an integer in [%lld, %lld], got '%s'\n", cmd, name,
                (long long)lo, (long long)hi, v);
        return -1;
    }
    *out = x;
    return 0;
}

int cli_get_float(const char *cmd, const cli_opt *opts, const char *name, double lo, double hi, double *out)
{
    const char *v = cli_get(opts, name);
    if (!v)
        return 0;
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (errno || end == v || *end || !isfinite(x) || x < lo || x > hi) {
        fprintf(stderr, "optvq %s: --%s must be a number in [%g, %g], got '%s'\n", cmd, name, lo, hi, v);
        return -1;
    }
    *out = x;
    return 0;
}

int cli_get_choice(const char *cmd, const cli_opt *opts, const char *name, const char *const *choices, int *out)
{
    const char *v = cli_get(opts, name);
    if (!v)
        return 0;
    for (int i = 0; choices[i]; i++)
        if (!strcmp(v, choices[i])) {
            *out = i;
            return 0;
        }
    fprintf(stderr, "optvq %s: --%s must be one of", cmd, name);
    for (int i = 0; choices[i]; i++)
        fprintf(stderr, "%s%s", i ? "|" : " ", choices[i]);
    fprintf(stderr, ", got '%s'\n", v);
    return -1;
}
