/* optvq serve — the interactive demo as a local web app: one page (compiled
 * into the binary) and a small JSON API on libmicrohttpd.
 *
 * Threads: libmicrohttpd runs one thread per connection (at most
 * MAX_CONNECTIONS). A POST that does work must first take one of --queue
 * slots, before its body is read (503 when none is free), so memory is
 * bounded by --queue x --max-upload. The work itself (decode, model, toy)
 * runs on one worker thread, in arrival order, so a model never serves two
 * requests at once and the library's own threads (--threads) do the
 * parallel part. A job that waited more than --queue-timeout seconds is
 * answered 503 without running. */
#include "cli/args.h"
#include "cli/commands.h"
#include "cli/perceptual.h"
#include "cli/util.h"
#include "optvq/optvq.h"
#include "serve/api.h"
#include "serve/assets.h"
#include "serve/encode.h"
#include "serve/multipart.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#define CMD "serve"
#define MAX_CONNECTIONS 256
#define MAX_MODELS 16

static const char HELP[] =
    "NAME\n"
    "    optvq serve - the interactive demo: a local web page and a JSON API\n"
    "\n"
    "SYNOPSIS\n"
    "    optvq serve [--model DIR]... [--host 127.0.0.1] [--port 8080] [--threads T]\n"
    "                [--lpips ALEX[,HEADS]] [--queue N] [--queue-timeout S]\n"
    "                [--max-upload MB] [--max-pixels N] [--timeout S]\n"
    "\n"
    "DESCRIPTION\n"
    "    Serves, on http://HOST:PORT/, a page that tokenizes and reconstructs an\n"
    "    uploaded (or dropped, or built-in example) image with a model: original,\n"
    "    reconstruction and error heatmap side by side, the token map of each\n"
    "    head, the histogram of the codes used, PSNR, SSIM (LPIPS with --lpips)\n"
    "    and the time taken, with the assignment (Sinkhorn / nearest) and\n"
    "    Sinkhorn's epsilon, iterations and normalisation to switch; and the 2-D\n"
    "    toy, vanilla VQ and OptVQ animated side by side as they train. The page,\n"
    "    its script and style are compiled into the binary: nothing is fetched\n"
    "    from elsewhere, it works offline. The same work is offered as JSON:\n"
    "      GET  /api/models        the models, one object each\n"
    "      POST /api/reconstruct   multipart/form-data: image (PNG/JPEG), and\n"
    "                              optional model, assign, epsilon, n_iters,\n"
    "                              normalize\n"
    "      POST /api/toy           a JSON object: points, codes, seed, steps,\n"
    "                              epsilon, frames (all optional)\n"
    "    Errors are JSON {\"error\": \"one line\"} with a 4xx/5xx status.\n"
    "    Without --model the models shipped with optvq are served: Fashion-MNIST\n"
    "    OptVQ and vanilla VQ, found in the folder 'models' next to the folder of\n"
    "    the binary (a build folder of the repository) or in\n"
    "    PREFIX/share/optvq/models (make install). SIGINT or SIGTERM stops the\n"
    "    server cleanly: work in progress is answered first.\n"
    "\n"
    "OPTIONS\n"
    "    --model DIR       a model folder (config.json + model.safetensors: a Hugging\n"
    "                      Face checkpoint or an 'optvq train' run); repeat it to\n"
    "                      offer several, at most 16 (default: the shipped models)\n"
    "    --host H          address to listen on (default 127.0.0.1). Anything but\n"
    "                      a loopback address exposes the server to the network: a\n"
    "                      warning says so\n"
    "    --port P          TCP port, 0 for any free one (default 8080); the address\n"
    "                      is printed once the server listens\n"
    "    --threads T       threads of the computations (default 0: all cores)\n"
    "    --lpips ALEX[,HEADS]\n"
    "                      also report LPIPS (AlexNet, v0.1): torchvision's\n"
    "                      alexnet-owt-7be5be79.pth and lpips's weights/v0.1/alex.pth\n"
    "    --queue N         requests that may be working or waiting at once, 1..256\n"
    "                      (default 8); more are answered 503\n"
    "    --queue-timeout S a request that waited S seconds for the worker is\n"
    "                      answered 503 (default 30)\n"
    "    --max-upload MB   largest request body, 1..1024 MiB (default 16): 413 above\n"
    "    --max-pixels N    largest uploaded image, width x height, 1..134217728\n"
    "                      (default 16777216, 4096x4096): 413 above\n"
    "    --timeout S       close a connection idle for S seconds (default 30)\n"
    "    --help            this text\n"
    "\n"
    "SAFETY\n"
    "    Binds 127.0.0.1 unless --host says otherwise. Requests never name files:\n"
    "    the page is served from memory, uploads are decoded in memory and a\n"
    "    model is chosen by name among those loaded at start. A request from\n"
    "    another web site (an Origin header that is not this server) and, on a\n"
    "    loopback address, a Host header that is not a loopback name are refused\n"
    "    (403), so other pages the browser shows cannot use the server.\n"
    "\n"
    "EXAMPLES\n"
    "    optvq serve                                # http://127.0.0.1:8080/\n"
    "    optvq serve --model optvq-16x16x4 --model optvq-16x16x8 --port 8000\n"
    "    curl -F image=@shirt.png -F assign=nearest http://127.0.0.1:8080/api/reconstruct\n"
    "\n"
    "EXIT STATUS\n"
    "    0 after SIGINT/SIGTERM, 1 runtime failure (a model that does not load, a\n"
    "    port in use), 2 usage error.\n";

/* ---- the work queue ------------------------------------------------------- */

typedef enum job_kind { JOB_RECONSTRUCT, JOB_TOY } job_kind;

typedef struct job {
    job_kind kind;
    const char *content_type;
    const uint8_t *body;
    size_t len;
    double enqueued;
    int done;
    serve_reply reply;
    struct job *next;
} job;

typedef struct server {
    serve_api api;
    int64_t max_body, queue_max;
    double queue_timeout;
    int loopback;
    unsigned port;
    pthread_mutex_t mu;
    pthread_cond_t work_cv, done_cv;
    job *head, *tail;
    int64_t admitted; /* requests holding a slot: receiving, queued or running */
    int stopping;
} server;

static void *worker_main(void *arg)
{
    server *s = arg;
    for (;;) {
        pthread_mutex_lock(&s->mu);
        while (!s->head && !s->stopping)
            pthread_cond_wait(&s->work_cv, &s->mu);
        job *j = s->head;
        if (!j) {
            pthread_mutex_unlock(&s->mu);
            return NULL;
        }
        s->head = j->next;
        if (!s->head)
            s->tail = NULL;
        pthread_mutex_unlock(&s->mu);
        double waited = cli_now() - j->enqueued;
        serve_reply r;
        if (waited > s->queue_timeout)
            r = serve_api_error(503, "server busy: the request waited %.0f s in the queue; try again", waited);
        else if (j->kind == JOB_RECONSTRUCT)
            r = serve_api_reconstruct(&s->api, j->content_type, j->body, j->len);
        else
            r = serve_api_toy(j->body, j->len);
        pthread_mutex_lock(&s->mu);
        j->reply = r;
        j->done = 1;
        pthread_cond_broadcast(&s->done_cv);
        pthread_mutex_unlock(&s->mu);
    }
}

/* Hands a job to the worker and waits for its answer. */
static serve_reply run_job(server *s, job *j)
{
    j->enqueued = cli_now();
    pthread_mutex_lock(&s->mu);
    if (s->stopping) {
        pthread_mutex_unlock(&s->mu);
        return serve_api_error(503, "the server is shutting down");
    }
    if (s->tail)
        s->tail->next = j;
    else
        s->head = j;
    s->tail = j;
    pthread_cond_signal(&s->work_cv);
    while (!j->done)
        pthread_cond_wait(&s->done_cv, &s->mu);
    pthread_mutex_unlock(&s->mu);
    return j->reply;
}

/* ---- HTTP ----------------------------------------------------------------- */

typedef struct request {
    job_kind kind;
    int admitted;
    int too_large;
    char content_type[256];
    serve_buf body;
} request;

static enum MHD_Result send_bytes(struct MHD_Connection *c, int status, const char *type, const void *data,
                                  size_t len, int copy, int is_head)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(is_head ? 0 : len, (void *)data,
                                                             copy ? MHD_RESPMEM_MUST_COPY : MHD_RESPMEM_PERSISTENT);
    if (!r)
        return MHD_NO;
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
    MHD_add_response_header(r, "Referrer-Policy", "no-referrer");
    MHD_add_response_header(r, "Content-Security-Policy",
                            "default-src 'self'; img-src 'self' data: blob:; object-src 'none'; "
                            "base-uri 'none'; frame-ancestors 'none'");
    if (status == 503)
        MHD_add_response_header(r, "Retry-After", "2");
    if (!strncmp(type, "application/json", 16))
        MHD_add_response_header(r, "Cache-Control", "no-store");
    enum MHD_Result ret = MHD_queue_response(c, (unsigned)status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result send_reply(struct MHD_Connection *c, serve_reply rep)
{
    enum MHD_Result ret = rep.json ? send_bytes(c, rep.status, "application/json", rep.json, strlen(rep.json), 1, 0)
                                   : MHD_NO;
    free(rep.json);
    return ret;
}

static enum MHD_Result send_error(struct MHD_Connection *c, int status, const char *msg)
{
    return send_reply(c, serve_api_error(status, "%s", msg));
}

/* Host must name a loopback address when the server listens on one (a DNS
 * rebinding page gets its own name there); Origin, when sent, must be this
 * server. */
static int request_allowed(const server *s, struct MHD_Connection *c, const char **why)
{
    const char *host = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_HOST);
    const char *origin = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Origin");
    if (s->loopback && host) {
        static const char *const names[] = {"127.0.0.1", "localhost", "[::1]", NULL};
        int ok = 0;
        for (int i = 0; names[i] && !ok; i++) {
            size_t n = strlen(names[i]);
            if (!strncasecmp(host, names[i], n) && (host[n] == '\0' || host[n] == ':'))
                ok = 1;
        }
        if (!ok) {
            *why = "forbidden: the Host header does not name this loopback server";
            return 0;
        }
    }
    if (origin && strcmp(origin, "null") != 0) {
        char expect[300];
        snprintf(expect, sizeof expect, "http://%s", host ? host : "");
        if (!host || strcasecmp(origin, expect) != 0) {
            *why = "forbidden: a request from another origin";
            return 0;
        }
    }
    return 1;
}

static const serve_asset *find_asset(const char *url)
{
    if (!strcmp(url, "/"))
        url = "/index.html";
    for (size_t i = 0; i < serve_assets_count; i++)
        if (!strcmp(serve_assets[i].path, url))
            return &serve_assets[i];
    return NULL;
}

static int is_json_type(const char *type)
{
    if (!type)
        return 0;
    while (*type == ' ')
        type++;
    return !strncasecmp(type, "application/json", 16) && (type[16] == '\0' || type[16] == ';' || type[16] == ' ');
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                  const char *version, const char *upload_data, size_t *upload_data_size,
                                  void **con_cls)
{
    (void)version;
    server *s = cls;
    request *rq = *con_cls;
    if (!rq) {
        /* the headers: answer now, or admit the request and read its body */
        const char *why = NULL;
        if (!request_allowed(s, c, &why))
            return send_error(c, 403, why);
        const int is_get = !strcmp(method, MHD_HTTP_METHOD_GET), is_head = !strcmp(method, MHD_HTTP_METHOD_HEAD);
        const int is_post = !strcmp(method, MHD_HTTP_METHOD_POST);
        const int api_post = !strcmp(url, "/api/reconstruct") || !strcmp(url, "/api/toy");
        if (!strcmp(url, "/api/models")) {
            if (!is_get && !is_head)
                return send_error(c, 405, "method not allowed: GET /api/models");
            return send_reply(c, serve_api_models(&s->api));
        }
        if (api_post && !is_post)
            return send_error(c, 405, "method not allowed: use POST");
        if (!api_post) {
            if (!strncmp(url, "/api/", 5))
                return send_error(c, 404, "no such API endpoint");
            if (!is_get && !is_head)
                return send_error(c, 405, "method not allowed");
            const serve_asset *a = find_asset(url);
            if (!a)
                return send_error(c, 404, "not found");
            return send_bytes(c, 200, a->type, a->data, a->len, 0, is_head);
        }
        const char *len_s = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (len_s) {
            char *end;
            errno = 0;
            unsigned long long n = strtoull(len_s, &end, 10);
            if (errno || *end || n > (unsigned long long)s->max_body) {
                char msg[128];
                snprintf(msg, sizeof msg, "request body too large (at most %lld MiB)",
                         (long long)(s->max_body >> 20));
                return send_error(c, 413, msg);
            }
        }
        const char *type = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
        job_kind kind = !strcmp(url, "/api/toy") ? JOB_TOY : JOB_RECONSTRUCT;
        if (kind == JOB_TOY && !is_json_type(type))
            return send_error(c, 415, "POST /api/toy takes Content-Type: application/json");
        if (kind == JOB_RECONSTRUCT) {
            char boundary[SERVE_BOUNDARY_MAX + 1], err[160];
            if (serve_multipart_boundary(type, boundary, err, sizeof err))
                return send_error(c, 415, err);
        }
        rq = calloc(1, sizeof *rq);
        if (!rq)
            return send_error(c, 500, "out of memory");
        rq->kind = kind;
        snprintf(rq->content_type, sizeof rq->content_type, "%s", type ? type : "");
        pthread_mutex_lock(&s->mu);
        int busy = s->admitted >= s->queue_max || s->stopping;
        if (!busy)
            s->admitted++;
        pthread_mutex_unlock(&s->mu);
        *con_cls = rq; /* freed by on_completed */
        if (busy)
            return send_error(c, 503, "server busy: too many requests at once; try again");
        rq->admitted = 1;
        return MHD_YES;
    }
    if (*upload_data_size) {
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        if (!rq->too_large && (rq->body.len + n > (size_t)s->max_body || serve_buf_append(&rq->body, upload_data, n))) {
            rq->too_large = 1; /* the rest is read and dropped */
            serve_buf_free(&rq->body);
        }
        return MHD_YES;
    }
    if (!rq->admitted) /* answered 503 at the headers */
        return MHD_YES;
    if (rq->too_large) {
        char msg[128];
        snprintf(msg, sizeof msg, "request body too large (at most %lld MiB)", (long long)(s->max_body >> 20));
        return send_error(c, 413, msg);
    }
    job j = {rq->kind, rq->content_type, rq->body.data, rq->body.len, 0, 0, {0, NULL}, NULL};
    serve_reply rep = run_job(s, &j);
    serve_buf_free(&rq->body);
    return send_reply(c, rep);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode code)
{
    (void)c;
    (void)code;
    server *s = cls;
    request *rq = *con_cls;
    if (!rq)
        return;
    if (rq->admitted) {
        pthread_mutex_lock(&s->mu);
        s->admitted--;
        pthread_mutex_unlock(&s->mu);
    }
    serve_buf_free(&rq->body);
    free(rq);
    *con_cls = NULL;
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t n = strlen(msg);
    while (n && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
        msg[--n] = '\0';
    fprintf(stderr, "optvq " CMD ": %s\n", msg);
}

/* ---- models --------------------------------------------------------------- */

static char *read_small_file(const char *path, size_t max)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *buf = malloc(max + 1);
    size_t n = buf ? fread(buf, 1, max + 1, f) : 0;
    fclose(f);
    if (!buf || n > max) {
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    return buf;
}

static int load_model(served_model *m, const char *dir, served_model *others, int n_others)
{
    if (optvq_model_load(dir, NULL, &m->model) != OPTVQ_OK) {
        fprintf(stderr, "optvq " CMD ": %s\n", optvq_last_error());
        return 1;
    }
    m->dir = strdup(dir);
    optvq_model_get_info(m->model, &m->info);
    m->defaults = *optvq_quantizer_get_config(optvq_model_quantizer(m->model));
    /* the name: the folder's last component, made unique */
    size_t len = strlen(dir);
    while (len > 1 && dir[len - 1] == '/')
        len--;
    const char *base = dir;
    for (size_t i = 0; i < len; i++)
        if (dir[i] == '/' && i + 1 < len)
            base = dir + i + 1;
    int blen = (int)(len - (size_t)(base - dir));
    snprintf(m->name, sizeof m->name, "%.*s", blen > 40 ? 40 : blen, base);
    for (int k = 2; k < 100; k++) {
        int clash = 0;
        for (int i = 0; i < n_others; i++)
            clash |= !strcmp(others[i].name, m->name);
        if (!clash)
            break;
        snprintf(m->name, sizeof m->name, "%.*s-%d", blen > 40 ? 40 : blen, base, k);
    }
    char path[PATH_MAX];
    if (snprintf(path, sizeof path, "%s/eval.json", dir) < (int)sizeof path)
        m->eval_json = read_small_file(path, 1 << 16);
    return 0;
}

/* The shipped models: DIR/../models or DIR/../share/optvq/models, DIR the
 * folder of the running binary. Returns the folder found, or NULL. */
static char *shipped_models_dir(void)
{
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0)
        return NULL;
    exe[n] = '\0';
    char *slash = strrchr(exe, '/');
    if (!slash)
        return NULL;
    *slash = '\0';
    static const char *const rel[] = {"/../models", "/../share/optvq/models", NULL};
    for (int i = 0; rel[i]; i++) {
        char dir[PATH_MAX];
        if (snprintf(dir, sizeof dir, "%s%s", exe, rel[i]) >= (int)sizeof dir)
            continue;
        if (cli_is_dir(dir))
            return realpath(dir, NULL);
    }
    return NULL;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* The model folders (holding config.json) of the shipped folder, sorted. */
static int list_model_dirs(const char *root, char **dirs, int max)
{
    DIR *d = opendir(root);
    if (!d)
        return 0;
    int n = 0;
    for (struct dirent *e; (e = readdir(d)) && n < max;) {
        if (e->d_name[0] == '.')
            continue;
        char cfg[PATH_MAX];
        if (snprintf(cfg, sizeof cfg, "%s/%s/config.json", root, e->d_name) >= (int)sizeof cfg)
            continue;
        struct stat sb;
        if (stat(cfg, &sb) == 0 && S_ISREG(sb.st_mode)) {
            cfg[strlen(cfg) - strlen("/config.json")] = '\0';
            dirs[n++] = strdup(cfg);
        }
    }
    closedir(d);
    qsort(dirs, (size_t)n, sizeof *dirs, cmp_str);
    return n;
}

/* ---- the command ---------------------------------------------------------- */

/* Resolves --host to a socket address; *loopback tells whether it is one. */
static int resolve_host(const char *host, unsigned port, struct sockaddr_storage *ss, socklen_t *ss_len, int *loopback)
{
    struct addrinfo hints = {0}, *res = NULL;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE;
    char ports[16];
    snprintf(ports, sizeof ports, "%u", port);
    int rc = getaddrinfo(host, ports, &hints, &res);
    if (rc != 0 || !res) {
        fprintf(stderr, "optvq " CMD ": --host %s: %s\n", host, gai_strerror(rc));
        return 2;
    }
    memcpy(ss, res->ai_addr, res->ai_addrlen);
    *ss_len = res->ai_addrlen;
    freeaddrinfo(res);
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
        *loopback = (ntohl(a->sin_addr.s_addr) >> 24) == 127;
    } else {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;
        *loopback = IN6_IS_ADDR_LOOPBACK(&a->sin6_addr);
    }
    return 0;
}

int cmd_serve(int argc, char **argv)
{
    /* --model may repeat: collect its values, give the rest to cli_parse */
    const char *model_dirs[MAX_MODELS];
    int n_dirs = 0;
    char **rest = calloc((size_t)argc + 1, sizeof *rest);
    int n_rest = 0;
    if (!rest) {
        fprintf(stderr, "optvq " CMD ": out of memory\n");
        return 1;
    }
    for (int i = 0; i < argc; i++) {
        const char *v = NULL;
        if (i > 0 && !strcmp(argv[i], "--model")) {
            if (i + 1 >= argc) {
                fprintf(stderr, "optvq " CMD ": option '--model' needs a value\n");
                free(rest);
                return 2;
            }
            v = argv[++i];
        } else if (i > 0 && !strncmp(argv[i], "--model=", 8)) {
            v = argv[i] + 8;
        }
        if (!v) {
            rest[n_rest++] = argv[i];
            continue;
        }
        if (n_dirs == MAX_MODELS) {
            fprintf(stderr, "optvq " CMD ": at most %d --model options\n", MAX_MODELS);
            free(rest);
            return 2;
        }
        model_dirs[n_dirs++] = v;
    }
    cli_opt opts[] = {{"host", 1, 0},       {"port", 1, 0},         {"threads", 1, 0}, {"lpips", 1, 0},
                      {"queue", 1, 0},      {"queue-timeout", 1, 0}, {"max-upload", 1, 0},
                      {"max-pixels", 1, 0}, {"timeout", 1, 0},       {0, 0, 0}};
    int pr = cli_parse(CMD, n_rest, rest, opts);
    free(rest);
    if (pr == 1) {
        fputs(HELP, stdout);
        return 0;
    }
    if (pr != 0)
        return 2;
    int64_t port = 8080, threads = 0, queue = 8, max_upload = 16, max_pixels = 4096 * 4096, timeout = 30;
    double queue_timeout = 30;
    if (cli_get_int(CMD, opts, "port", 0, 65535, &port) || cli_get_int(CMD, opts, "threads", 0, 4096, &threads) ||
        cli_get_int(CMD, opts, "queue", 1, 256, &queue) ||
        cli_get_float(CMD, opts, "queue-timeout", 0.1, 86400, &queue_timeout) ||
        cli_get_int(CMD, opts, "max-upload", 1, 1024, &max_upload) ||
        cli_get_int(CMD, opts, "max-pixels", 1, (int64_t)1 << 27, &max_pixels) ||
        cli_get_int(CMD, opts, "timeout", 1, 86400, &timeout))
        return 2;
    const char *host = cli_get(opts, "host");
    if (!host)
        host = "127.0.0.1";
    struct sockaddr_storage addr;
    socklen_t addr_len = 0;
    int loopback = 0;
    if (resolve_host(host, (unsigned)port, &addr, &addr_len, &loopback))
        return 2;
    optvq_set_num_threads((int)threads);

    int rc = 1;
    server s;
    memset(&s, 0, sizeof s);
    served_model models[MAX_MODELS];
    memset(models, 0, sizeof models);
    char *found[MAX_MODELS] = {0};
    int n_found = 0;
    char *shipped = NULL;
    cli_perceptual lpips;
    memset(&lpips, 0, sizeof lpips);
    int lpips_open = 0;
    struct MHD_Daemon *d = NULL;
    pthread_t worker;
    int worker_started = 0;
    if (n_dirs == 0) {
        shipped = shipped_models_dir();
        n_found = shipped ? list_model_dirs(shipped, found, MAX_MODELS) : 0;
        if (n_found == 0) {
            fprintf(stderr,
                    "optvq " CMD ": no --model given and no shipped model found (looked for models/ next to the "
                    "binary's folder and share/optvq/models); give --model DIR\n");
            goto done;
        }
        for (int i = 0; i < n_found; i++)
            model_dirs[n_dirs++] = found[i];
    }
    for (int i = 0; i < n_dirs; i++) {
        if (load_model(&models[i], model_dirs[i], models, i))
            goto done;
        s.api.n_models = i + 1;
    }
    s.api.models = models;
    s.api.max_pixels = max_pixels;
    const char *lpips_arg = cli_get(opts, "lpips");
    if (lpips_arg) {
        if (cli_perceptual_open(&lpips, CMD, lpips_arg, NULL))
            goto done;
        lpips_open = 1;
        s.api.lpips = &lpips;
    }
    s.max_body = max_upload << 20;
    s.queue_max = queue;
    s.queue_timeout = queue_timeout;
    s.loopback = loopback;
    pthread_mutex_init(&s.mu, NULL);
    pthread_cond_init(&s.work_cv, NULL);
    pthread_cond_init(&s.done_cv, NULL);

    /* SIGINT/SIGTERM are taken by sigwait below: blocked in every thread
     * (the mask is inherited), so no thread is interrupted mid-request */
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGINT);
    sigaddset(&stop_signals, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop_signals, NULL);
    signal(SIGPIPE, SIG_IGN);

    if (pthread_create(&worker, NULL, worker_main, &s) != 0) {
        fprintf(stderr, "optvq " CMD ": cannot start the worker thread\n");
        goto done;
    }
    worker_started = 1;
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG;
    if (addr.ss_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    d = MHD_start_daemon(flags, (uint16_t)port, NULL, NULL, on_request, &s, MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log,
                         NULL, MHD_OPTION_SOCK_ADDR, (const struct sockaddr *)&addr, MHD_OPTION_CONNECTION_LIMIT,
                         (unsigned)MAX_CONNECTIONS, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)timeout,
                         MHD_OPTION_NOTIFY_COMPLETED, on_completed, &s, MHD_OPTION_END);
    if (!d) {
        fprintf(stderr, "optvq " CMD ": cannot listen on %s port %lld (in use, or not an address of this machine)\n",
                host, (long long)port);
        goto done;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    s.port = info ? info->port : (unsigned)port;
    if (!loopback)
        fprintf(stderr,
                "optvq " CMD ": warning: --host %s is not a loopback address: anyone who can reach this machine "
                "can use the server\n",
                host);
    for (int i = 0; i < s.api.n_models; i++)
        printf("optvq " CMD ": model %s (%s, %lldx%lld, %lld codes, %lld heads, %s)\n", models[i].name,
               models[i].dir, (long long)models[i].info.resolution, (long long)models[i].info.resolution,
               (long long)models[i].info.n_e, (long long)models[i].info.num_head,
               models[i].defaults.assign == OPTVQ_ASSIGN_SINKHORN ? "Sinkhorn" : "nearest");
    int v6 = addr.ss_family == AF_INET6;
    printf("optvq " CMD ": listening on http://%s%s%s:%u/ (Ctrl-C to stop)\n", v6 ? "[" : "", host, v6 ? "]" : "",
           s.port);
    fflush(stdout);

    int sig = 0;
    while (sigwait(&stop_signals, &sig) != 0)
        ;
    printf("optvq " CMD ": %s: shutting down\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
    fflush(stdout);
    rc = 0;

done:
    if (d) /* waits for the connections, whose jobs the worker still answers */
        MHD_stop_daemon(d);
    if (worker_started) {
        pthread_mutex_lock(&s.mu);
        s.stopping = 1;
        pthread_cond_broadcast(&s.work_cv);
        pthread_mutex_unlock(&s.mu);
        pthread_join(worker, NULL);
    }
    if (worker_started || d) {
        pthread_mutex_destroy(&s.mu);
        pthread_cond_destroy(&s.work_cv);
        pthread_cond_destroy(&s.done_cv);
    }
    if (lpips_open)
        cli_perceptual_free(&lpips);
    for (int i = 0; i < MAX_MODELS; i++) {
        optvq_model_free(models[i].model);
        free(models[i].dir);
        free(models[i].eval_json);
    }
    for (int i = 0; i < n_found; i++)
        free(found[i]);
    free(shipped);
    return rc;
}
