/* Parity of the C quantizer with the PyTorch reference states written by
 * tools/gen_quant_ref.py into tests/ref/quant/<case>/ (see that script for the
 * file list). For every case: same parameters and input, then
 *   - indices exactly (vectors whose reference score row has a relative gap
 *     between best and second best under TIE_MARGIN are skipped and counted;
 *     the underflow case is compared everywhere),
 *   - x_q, loss and every gradient of loss + sum(x_q * G) within tolerance
 *     (fail only when max_rel > 1e-3 AND max_abs > 1e-5),
 *   - decode(indices) == x_q bit for bit, and x_q rows == codebook rows.
 * A second test reruns the Sinkhorn cases on the streamed path (tiny
 * workspace) and in the log domain and checks the indices away from ties. */
#include "optvq/optvq.h"
#include "test.h"

#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define TIE_MARGIN 1e-5
#define TOL_REL 1e-3
#define TOL_ABS 1e-5
#define MAX_CASES 256

typedef struct qcase {
    char name[256];
    char dir[1024];
    optvq_quantizer_config cfg;
    int underflow;                  /* the case built to underflow exp(-eps*D) */
    int flat;                       /* x is (N, e_dim)                          */
    int64_t batch, height, width;   /* C API view of x                          */
    int64_t n_vec;                  /* N = batch * height * width * num_head    */
    int64_t numel;                  /* elements of x                            */
    optvq_array x, embedding, proj_weight, proj_bias, grad_out;
    optvq_array indices, x_q, loss, grad_x, grad_embedding, grad_proj_weight, grad_proj_bias;
    optvq_array tie_margin;
} qcase;

/* ---- loading ------------------------------------------------------------- */

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Sorted names of the case folders (those holding config.txt). */
static int list_cases(char **names, int max)
{
    char root[1024];
    snprintf(root, sizeof root, "%s/quant", test_ref_dir());
    DIR *d = opendir(root);
    if (!d) {
        fprintf(stderr, "    cannot open %s (run /usr/bin/python3 tools/gen_quant_ref.py)\n", root);
        return 0;
    }
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL && n < max) {
        if (e->d_name[0] == '.')
            continue;
        char cfg[1400];
        struct stat st;
        snprintf(cfg, sizeof cfg, "%s/%s/config.txt", root, e->d_name);
        if (stat(cfg, &st) == 0 && S_ISREG(st.st_mode))
            names[n++] = strdup(e->d_name);
    }
    closedir(d);
    qsort(names, (size_t)n, sizeof *names, cmp_str);
    return n;
}

static int parse_config(const char *dir, optvq_quantizer_config *cfg)
{
    char path[1200], line[512];
    snprintf(path, sizeof path, "%s/config.txt", dir);
    FILE *fp = fopen(path, "r");
    if (!fp) {
        fprintf(stderr, "    cannot open %s\n", path);
        return -1;
    }
    optvq_quantizer_config_default(cfg);
    int ok = 0, seen = 0;
    while (fgets(line, sizeof line, fp)) {
        char key[64], val[128];
        if (line[0] == '#' || sscanf(line, "%63s %127s", key, val) != 2)
            continue;
        seen++;
        if (!strcmp(key, "n_e"))
            cfg->n_e = atoll(val);
        else if (!strcmp(key, "e_dim"))
            cfg->e_dim = atoll(val);
        else if (!strcmp(key, "num_head"))
            cfg->num_head = atoll(val);
        else if (!strcmp(key, "assign")) {
            if (!strcmp(val, "sinkhorn"))
                cfg->assign = OPTVQ_ASSIGN_SINKHORN;
            else if (!strcmp(val, "nearest"))
                cfg->assign = OPTVQ_ASSIGN_NEAREST;
            else
                ok = -1;
        } else if (!strcmp(key, "normalize")) {
            if (!strcmp(val, "all"))
                cfg->normalize = OPTVQ_NORMALIZE_ALL;
            else if (!strcmp(val, "dim"))
                cfg->normalize = OPTVQ_NORMALIZE_DIM;
            else if (!strcmp(val, "null"))
                cfg->normalize = OPTVQ_NORMALIZE_NULL;
            else
                ok = -1;
        } else if (!strcmp(key, "loss")) {
            if (!strcmp(val, "l2"))
                cfg->loss = OPTVQ_LOSS_L2;
            else if (!strcmp(val, "l1"))
                cfg->loss = OPTVQ_LOSS_L1;
            else if (!strcmp(val, "ce"))
                cfg->loss = OPTVQ_LOSS_CE;
            else
                ok = -1;
        } else if (!strcmp(key, "beta"))
            cfg->beta = strtof(val, NULL);
        else if (!strcmp(key, "epsilon"))
            cfg->epsilon = strtof(val, NULL);
        else if (!strcmp(key, "n_iters"))
            cfg->n_iters = atoi(val);
        else if (!strcmp(key, "use_proj"))
            cfg->use_proj = atoi(val);
        else
            printf("    note: %s: unknown key '%s' ignored\n", path, key);
        if (ok)
            break;
    }
    fclose(fp);
    if (ok || seen < 10) {
        fprintf(stderr, "    %s: bad or incomplete config\n", path);
        return -1;
    }
    return 0;
}

/* Reads dir/name.npy as float32 (or int64) and checks its element count. */
static int load(const qcase *c, const char *name, int as_int, int64_t want_numel, optvq_array *a)
{
    char path[1200];
    snprintf(path, sizeof path, "%s/%s.npy", c->dir, name);
    optvq_status st = optvq_npy_read(path, a);
    if (st == OPTVQ_OK)
        st = as_int ? optvq_array_to_i64(a) : optvq_array_to_f32(a);
    if (st != OPTVQ_OK) {
        CHECK_MSG(0, "%s", optvq_last_error());
        return -1;
    }
    if (want_numel >= 0 && optvq_array_numel(a) != want_numel) {
        CHECK_MSG(0, "%s: %lld elements, want %lld", path, (long long)optvq_array_numel(a),
                  (long long)want_numel);
        return -1;
    }
    return 0;
}

static void case_free(qcase *c)
{
    optvq_array *all[] = {&c->x,       &c->embedding, &c->proj_weight,    &c->proj_bias,
                          &c->grad_out, &c->indices,  &c->x_q,            &c->loss,
                          &c->grad_x,  &c->grad_embedding, &c->grad_proj_weight, &c->grad_proj_bias,
                          &c->tie_margin};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++)
        optvq_array_free(all[i]);
}

static int case_load(qcase *c, const char *name)
{
    memset(c, 0, sizeof *c);
    snprintf(c->name, sizeof c->name, "%s", name);
    snprintf(c->dir, sizeof c->dir, "%s/quant/%s", test_ref_dir(), name);
    c->underflow = strstr(name, "underflow") != NULL;
    if (parse_config(c->dir, &c->cfg) != 0) {
        CHECK_MSG(0, "%s: cannot parse config.txt", name);
        return -1;
    }
    const int64_t e_dim = c->cfg.e_dim, h = c->cfg.num_head, n_e = c->cfg.n_e;
    if (e_dim <= 0 || h <= 0 || n_e <= 0 || e_dim % h) {
        CHECK_MSG(0, "%s: bad sizes in config", name);
        return -1;
    }
    const int64_t d = e_dim / h;
    if (load(c, "x", 0, -1, &c->x))
        return -1;
    if (c->x.ndim == 4 && c->x.shape[1] == e_dim) {
        c->batch = c->x.shape[0];
        c->height = c->x.shape[2];
        c->width = c->x.shape[3];
    } else if (c->x.ndim == 2 && c->x.shape[1] == e_dim) {
        c->flat = 1;
        c->batch = c->x.shape[0];
        c->height = c->width = 1;
    } else {
        CHECK_MSG(0, "%s: x.npy has an unexpected shape", name);
        return -1;
    }
    c->numel = optvq_array_numel(&c->x);
    c->n_vec = c->batch * c->height * c->width * h;
    if (load(c, "embedding", 0, n_e * d, &c->embedding) || load(c, "grad_out", 0, c->numel, &c->grad_out) ||
        load(c, "indices", 1, c->n_vec, &c->indices) || load(c, "x_q", 0, c->numel, &c->x_q) ||
        load(c, "loss", 0, 1, &c->loss) || load(c, "grad_x", 0, c->numel, &c->grad_x) ||
        load(c, "grad_embedding", 0, n_e * d, &c->grad_embedding) ||
        load(c, "tie_margin", 0, c->n_vec, &c->tie_margin))
        return -1;
    if (c->cfg.use_proj &&
        (load(c, "proj_weight", 0, d * d, &c->proj_weight) || load(c, "proj_bias", 0, d, &c->proj_bias) ||
         load(c, "grad_proj_weight", 0, d * d, &c->grad_proj_weight) ||
         load(c, "grad_proj_bias", 0, d, &c->grad_proj_bias)))
        return -1;
    return 0;
}

/* Creates a quantizer for the case with the reference parameters copied in. */
static optvq_quantizer *make_quantizer(const qcase *c, const optvq_quantizer_config *cfg)
{
    optvq_quantizer *q = NULL;
    optvq_status st = optvq_quantizer_create(cfg, 1234, &q);
    if (st != OPTVQ_OK) {
        CHECK_MSG(0, "%s: optvq_quantizer_create: %s: %s", c->name, optvq_status_string(st), optvq_last_error());
        return NULL;
    }
    struct {
        optvq_param which;
        const optvq_array *src;
    } params[] = {{OPTVQ_PARAM_EMBEDDING, &c->embedding},
                  {OPTVQ_PARAM_PROJ_WEIGHT, &c->proj_weight},
                  {OPTVQ_PARAM_PROJ_BIAS, &c->proj_bias}};
    for (int i = 0; i < 3; i++) {
        int64_t count = -1;
        float *p = optvq_quantizer_param(q, params[i].which, &count);
        if (i > 0 && !cfg->use_proj) {
            CHECK_MSG(p == NULL, "%s: parameter %d exists with use_proj 0", c->name, i);
            continue;
        }
        if (!p || count != optvq_array_numel(params[i].src)) {
            CHECK_MSG(0, "%s: parameter %d: %p with %lld elements, want %lld", c->name, i, (void *)p,
                      (long long)count, (long long)optvq_array_numel(params[i].src));
            optvq_quantizer_free(q);
            return NULL;
        }
        memcpy(p, params[i].src->data, (size_t)count * sizeof(float));
    }
    return q;
}

/* Position of vector n = ((b*H + y)*W + x)*h + head in the (B, h, H, W) index array. */
static int64_t index_pos(const qcase *c, int64_t n)
{
    const int64_t h = c->cfg.num_head;
    const int64_t head = n % h, pix = n / h;
    const int64_t xx = pix % c->width, y = (pix / c->width) % c->height, b = pix / (c->width * c->height);
    return ((b * h + head) * c->height + y) * c->width + xx;
}

/* Element offset of component j of vector n in the (B, C, H, W) tensor. */
static int64_t elem_pos(const qcase *c, int64_t n, int64_t j)
{
    const int64_t h = c->cfg.num_head, d = c->cfg.e_dim / h, C = c->cfg.e_dim;
    const int64_t head = n % h, pix = n / h;
    const int64_t xx = pix % c->width, y = (pix / c->width) % c->height, b = pix / (c->width * c->height);
    return ((b * C + head * d + j) * c->height + y) * c->width + xx;
}

static int near_tie(const qcase *c, int64_t n)
{
    return ((const float *)c->tie_margin.data)[n] < TIE_MARGIN;
}

/* Compares indices; returns the number of mismatches away from ties and sets
 * *flipped to the number of skipped near-tie vectors whose index differs. */
static int64_t compare_indices(const qcase *c, const char *what, const int64_t *got, int compare_ties,
                               int64_t *skipped, int64_t *flipped)
{
    const int64_t *want = c->indices.data;
    const float *margin = c->tie_margin.data;
    int64_t bad = 0, printed = 0;
    *skipped = *flipped = 0;
    fflush(stdout); /* keep stdout and stderr lines in order */
    for (int64_t n = 0; n < c->n_vec; n++) {
        const int64_t p = index_pos(c, n);
        if (!compare_ties && near_tie(c, n)) {
            ++*skipped;
            *flipped += got[p] != want[p];
            continue;
        }
        if (got[p] != want[p]) {
            bad++;
            if (printed++ < 8)
                fprintf(stderr, "    %s %s: vector %lld (b,y,x,head order): index %lld, want %lld (tie margin %.3g)\n",
                        c->name, what, (long long)n, (long long)got[p], (long long)want[p], margin[n]);
        }
    }
    return bad;
}

static int within(test_diff d) { return !(d.max_rel > TOL_REL && d.max_abs > TOL_ABS); }

/* test_compare without the printout. */
static test_diff quiet_compare(const float *got, const float *want, int64_t n)
{
    test_diff d = {0, 0, 0};
    for (int64_t i = 0; i < n; i++) {
        double e = fabs((double)got[i] - want[i]);
        if (!(e <= d.max_abs))
            d.max_abs = isnan(e) ? INFINITY : e;
        double r = e / (fabs(want[i]) > 1e-6 ? fabs(want[i]) : 1e-6);
        if (!(r <= d.max_rel))
            d.max_rel = isnan(r) ? INFINITY : r;
    }
    return d;
}

/* ---- the parity test ------------------------------------------------------- */

typedef struct summary {
    double max_abs, max_rel;
} summary;

static void note(summary *s, test_diff d)
{
    if (d.max_abs > s->max_abs)
        s->max_abs = d.max_abs;
    if (d.max_rel > s->max_rel)
        s->max_rel = d.max_rel;
}

static int run_case(const qcase *c, summary *sum)
{
    const int failures_before = test_failures;
    const int64_t h = c->cfg.num_head, d = c->cfg.e_dim / h, n_e = c->cfg.n_e;
    optvq_quantizer *q = make_quantizer(c, &c->cfg);
    if (!q)
        return -1;
    float *x_q = calloc((size_t)c->numel, sizeof *x_q);
    float *grad_x = calloc((size_t)c->numel, sizeof *grad_x);
    float *decoded = calloc((size_t)c->numel, sizeof *decoded);
    float *codebook = calloc((size_t)(n_e * d), sizeof *codebook);
    int64_t *indices = calloc((size_t)c->n_vec, sizeof *indices);
    float loss = NAN;
    char what[320];

    optvq_quantizer_zero_grad(q);
    optvq_status st = optvq_quantizer_forward(q, c->x.data, c->batch, c->height, c->width, x_q, indices, &loss);
    CHECK_OK(st);
    if (st != OPTVQ_OK)
        goto done;

    /* indices */
    int64_t skipped, flipped;
    int64_t bad = compare_indices(c, "indices", indices, c->underflow, &skipped, &flipped);
    printf("    %s: indices %lld/%lld compared, %lld mismatches; %lld near ties skipped (%lld differ)\n", c->name,
           (long long)(c->n_vec - skipped), (long long)c->n_vec, (long long)bad, (long long)skipped,
           (long long)flipped);
    CHECK_MSG(bad == 0, "%s: %lld indices differ from the reference", c->name, (long long)bad);

    /* x_q rows are codebook rows, exactly; decode reproduces x_q bit for bit */
    CHECK_OK(optvq_quantizer_codebook(q, codebook));
    int64_t not_rows = 0;
    for (int64_t n = 0; n < c->n_vec; n++) {
        const int64_t k = indices[index_pos(c, n)];
        if (k < 0 || k >= n_e) {
            not_rows++;
            continue;
        }
        for (int64_t j = 0; j < d; j++)
            not_rows += memcmp(&x_q[elem_pos(c, n, j)], &codebook[k * d + j], sizeof(float)) != 0;
    }
    CHECK_MSG(not_rows == 0, "%s: %lld x_q elements are not the chosen codebook entries", c->name,
              (long long)not_rows);
    CHECK_OK(optvq_quantizer_decode(q, indices, c->batch, c->height, c->width, decoded));
    CHECK_MSG(memcmp(decoded, x_q, (size_t)c->numel * sizeof(float)) == 0, "%s: decode(indices) != x_q bit for bit",
              c->name);

    /* When a near tie went the other way, x_q differs at that vector and the
     * loss and gradients legitimately differ: compare x_q elsewhere only. */
    if (flipped) {
        float *masked = malloc((size_t)c->numel * sizeof *masked);
        memcpy(masked, x_q, (size_t)c->numel * sizeof *masked);
        for (int64_t n = 0; n < c->n_vec; n++)
            if (near_tie(c, n) && indices[index_pos(c, n)] != ((int64_t *)c->indices.data)[index_pos(c, n)])
                for (int64_t j = 0; j < d; j++)
                    masked[elem_pos(c, n, j)] = ((float *)c->x_q.data)[elem_pos(c, n, j)];
        snprintf(what, sizeof what, "%s x_q (flipped ties masked)", c->name);
        test_diff dq = test_compare(what, masked, c->x_q.data, c->numel);
        note(sum, dq);
        CHECK_MSG(within(dq), "%s: x_q differs", c->name);
        printf("    %s: %lld near ties flipped: loss and gradients not compared\n", c->name, (long long)flipped);
        free(masked);
        goto done;
    }
    snprintf(what, sizeof what, "%s x_q", c->name);
    test_diff dq = test_compare(what, x_q, c->x_q.data, c->numel);
    note(sum, dq);
    CHECK_MSG(within(dq), "%s: x_q differs", c->name);
    snprintf(what, sizeof what, "%s loss", c->name);
    test_diff dl = test_compare(what, &loss, c->loss.data, 1);
    note(sum, dl);
    CHECK_MSG(within(dl), "%s: loss %.9g, want %.9g", c->name, loss, *(float *)c->loss.data);

    /* backward of loss + sum(x_q * G) */
    st = optvq_quantizer_backward(q, c->grad_out.data, 1.0f, grad_x);
    CHECK_OK(st);
    if (st != OPTVQ_OK)
        goto done;
    snprintf(what, sizeof what, "%s grad_x", c->name);
    test_diff dg = test_compare(what, grad_x, c->grad_x.data, c->numel);
    note(sum, dg);
    CHECK_MSG(within(dg), "%s: grad_x differs", c->name);
    struct {
        optvq_param which;
        const char *name;
        const optvq_array *want;
    } grads[] = {{OPTVQ_PARAM_EMBEDDING, "grad_embedding", &c->grad_embedding},
                 {OPTVQ_PARAM_PROJ_WEIGHT, "grad_proj_weight", &c->grad_proj_weight},
                 {OPTVQ_PARAM_PROJ_BIAS, "grad_proj_bias", &c->grad_proj_bias}};
    for (int i = 0; i < (c->cfg.use_proj ? 3 : 1); i++) {
        int64_t count = -1;
        const float *g = optvq_quantizer_grad(q, grads[i].which, &count);
        if (!g || count != optvq_array_numel(grads[i].want)) {
            CHECK_MSG(0, "%s: %s missing or of %lld elements", c->name, grads[i].name, (long long)count);
            continue;
        }
        snprintf(what, sizeof what, "%s %s", c->name, grads[i].name);
        test_diff dp = test_compare(what, g, grads[i].want->data, count);
        note(sum, dp);
        CHECK_MSG(within(dp), "%s: %s differs", c->name, grads[i].name);
    }
done:
    optvq_quantizer_free(q);
    free(x_q);
    free(grad_x);
    free(decoded);
    free(codebook);
    free(indices);
    return test_failures == failures_before ? 0 : 1;
}

TEST(quant_parity)
{
    char *names[MAX_CASES];
    int n = list_cases(names, MAX_CASES);
    CHECK_MSG(n > 0, "no reference cases under %s/quant", test_ref_dir());
    int passed = 0, failed = 0;
    char failed_names[4096] = "";
    summary sum = {0, 0};
    for (int i = 0; i < n; i++) {
        qcase c;
        int rc = case_load(&c, names[i]) == 0 ? run_case(&c, &sum) : -1;
        if (rc == 0)
            passed++;
        else {
            failed++;
            size_t len = strlen(failed_names);
            snprintf(failed_names + len, sizeof failed_names - len, " %s", names[i]);
        }
        case_free(&c);
        free(names[i]);
    }
    printf("    quant parity: %d cases passed, %d failed%s%s; worst over all: max_abs=%.3g max_rel=%.3g\n", passed,
           failed, failed ? ":" : "", failed_names, sum.max_abs, sum.max_rel);
}

/* Informational: in the underflow case the log domain does not see the rows of
 * zeros the float32 reference sees, so it may choose differently there. Only
 * checks that it runs and gives valid indices; prints how many differ. */
static void underflow_log_domain(const qcase *c)
{
    optvq_quantizer_config cfg = c->cfg;
    cfg.log_domain = 1;
    optvq_quantizer *q = make_quantizer(c, &cfg);
    if (!q)
        return;
    float *x_q = calloc((size_t)c->numel, sizeof *x_q);
    int64_t *indices = calloc((size_t)c->n_vec, sizeof *indices);
    const int64_t *want = c->indices.data;
    CHECK_OK(optvq_quantizer_forward(q, c->x.data, c->batch, c->height, c->width, x_q, indices, NULL));
    int64_t differ = 0, zero_rows = 0, zero_rows_differ = 0, invalid = 0;
    for (int64_t n = 0; n < c->n_vec; n++) {
        const int64_t p = index_pos(c, n);
        const int zero_row = ((const float *)c->tie_margin.data)[n] == 0.0f;
        invalid += indices[p] < 0 || indices[p] >= c->cfg.n_e;
        differ += indices[p] != want[p];
        zero_rows += zero_row;
        zero_rows_differ += zero_row && indices[p] != want[p];
    }
    CHECK_MSG(invalid == 0, "%s log-domain: %lld indices out of range", c->name, (long long)invalid);
    printf("    %s log-domain (informational): %lld of %lld indices differ from the float32 reference; "
           "%lld of them on the %lld rows the reference underflows to all zeros\n",
           c->name, (long long)differ, (long long)c->n_vec, (long long)zero_rows_differ, (long long)zero_rows);
    free(x_q);
    free(indices);
    optvq_quantizer_free(q);
}

/* Streamed path (workspace too small for the N x n_e matrix) and log-domain
 * Sinkhorn give the reference indices away from ties. The underflow case is
 * left out: there the log domain differs on purpose. */
TEST(quant_parity_streamed_logdomain)
{
    char *names[MAX_CASES];
    int n = list_cases(names, MAX_CASES);
    CHECK_MSG(n > 0, "no reference cases under %s/quant", test_ref_dir());
    int runs = 0;
    for (int i = 0; i < n; i++) {
        qcase c;
        const int loaded = case_load(&c, names[i]) == 0;
        if (loaded && c.underflow) {
            underflow_log_domain(&c);
            case_free(&c);
            free(names[i]);
            continue;
        }
        if (!loaded || c.cfg.assign != OPTVQ_ASSIGN_SINKHORN) {
            case_free(&c);
            free(names[i]);
            continue;
        }
        size_t matrix = (size_t)(c.n_vec * c.cfg.n_e) * sizeof(float);
        size_t tiny = 4096 < matrix ? 4096 : matrix / 2;
        struct {
            const char *what;
            size_t ws;
            int log_domain;
        } variants[] = {{"streamed", tiny, 0}, {"log-domain", 0, 1}, {"streamed+log-domain", tiny, 1}};
        for (int v = 0; v < 3; v++) {
            optvq_quantizer_config cfg = c.cfg;
            cfg.workspace_bytes = variants[v].ws;
            cfg.log_domain = variants[v].log_domain;
            optvq_quantizer *q = make_quantizer(&c, &cfg);
            if (!q)
                continue;
            float *x_q = calloc((size_t)c.numel, sizeof *x_q);
            int64_t *indices = calloc((size_t)c.n_vec, sizeof *indices);
            float loss = NAN;
            optvq_status st = optvq_quantizer_forward(q, c.x.data, c.batch, c.height, c.width, x_q, indices, &loss);
            CHECK_OK(st);
            if (st == OPTVQ_OK) {
                int64_t skipped, flipped;
                int64_t bad = compare_indices(&c, variants[v].what, indices, 0, &skipped, &flipped);
                if (bad || flipped)
                    printf("    %s %s: %lld mismatches, %lld of %lld near ties differ\n", c.name, variants[v].what,
                           (long long)bad, (long long)flipped, (long long)skipped);
                CHECK_MSG(bad == 0, "%s %s: %lld indices differ away from ties", c.name, variants[v].what,
                          (long long)bad);
                if (!bad && !flipped) {
                    /* same choices: same x_q and loss */
                    test_diff dq = quiet_compare(x_q, c.x_q.data, c.numel);
                    CHECK_MSG(within(dq), "%s %s: x_q differs", c.name, variants[v].what);
                    CHECK_MSG(fabsf(loss - *(float *)c.loss.data) <= 1e-3f * fabsf(*(float *)c.loss.data) + 1e-5f,
                              "%s %s: loss %.9g, want %.9g", c.name, variants[v].what, loss,
                              *(float *)c.loss.data);
                }
                runs++;
            }
            free(x_q);
            free(indices);
            optvq_quantizer_free(q);
        }
        case_free(&c);
        free(names[i]);
    }
    printf("    streamed / log-domain: %d runs compared\n", runs);
    CHECK(runs > 0);
}
