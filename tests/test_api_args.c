/* Every public function (the headers in include/optvq/) meets NULL, zero, negative,
 * out-of-range and overflowing arguments, one at a time beside otherwise
 * valid ones: a function returning a status refuses each with an error and a
 * non-empty one-line optvq_last_error(), never a crash; a function returning
 * void or a pointer is NULL-safe. Each check first makes the valid call, so a
 * refusal is the bad argument's doing.
 *
 * tests/cli/api_names.sh checks that the API() table at the end names every
 * function the header declares (and nothing else), and that each args_ check
 * calls its function: a new public function without a check fails there. */
#include "core/error.h"
#include "optvq/optvq.h"
#include "optvq/train.h"
#include "test.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

static int one_line(const char *msg) { return msg && msg[0] && !strchr(msg, '\n') && !strchr(msg, '\r'); }

static void check_refused(const char *call, optvq_status got, optvq_status want, int line)
{
    const char *msg = optvq_last_error();
    if (got != want) {
        fprintf(stderr, "    %s:%d: %s -> %s ('%s'), want %s\n", __FILE__, line, call, optvq_status_string(got),
                msg, optvq_status_string(want));
        test_failures++;
    } else if (!one_line(msg)) {
        fprintf(stderr, "    %s:%d: %s gave no one-line message: '%s'\n", __FILE__, line, call, msg ? msg : "(null)");
        test_failures++;
    }
}

/* `call` must return `want` with a fresh one-line message. */
#define REFUSED_AS(want, call)                               \
    do {                                                     \
        optvq_clear_error();                                 \
        check_refused(#call, (call), (want), __LINE__);      \
    } while (0)
#define REFUSED(call) REFUSED_AS(OPTVQ_ERR_INVALID_ARG, call)

/* `expr` evaluated on a clean error state: for getters and setters that
 * report a NULL handle or an unknown value without a status to return. */
#define FRESH(expr) (optvq_clear_error(), (expr))
#define MESSAGE_IS_ONE_LINE() CHECK(one_line(optvq_last_error()))

/* ---- fixtures: a small quantizer and the small plain-CNN model ---- */

enum { QN_E = 8, QE_DIM = 4, QHEADS = 2, QB = 2, QH = 3, QW = 1 };
#define QNUMEL (QB * QE_DIM * QH * QW)
#define QCODES (QB * QHEADS * QH * QW)

static void small_config(optvq_quantizer_config *c)
{
    optvq_quantizer_config_default(c);
    c->n_e = QN_E;
    c->e_dim = QE_DIM;
    c->num_head = QHEADS;
}

static optvq_quantizer *small_quantizer(void)
{
    optvq_quantizer_config c;
    small_config(&c);
    optvq_quantizer *q = NULL;
    CHECK_OK(optvq_quantizer_create(&c, 7, &q));
    return q;
}

static void fill(float *x, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        x[i] = (float)((i * 7) % 11) / 5.5f - 1.0f;
}

static const char *model_config_path(void)
{
    static char path[512];
    snprintf(path, sizeof path, "%s/model/plain/config.yaml", test_ref_dir());
    return path;
}

static optvq_model *small_model(void)
{
    optvq_model *m = NULL;
    CHECK_OK(optvq_model_create(model_config_path(), 3, &m));
    return m;
}

/* ---- library state ---- */

static void args_optvq_version(void)
{
    const char *v = optvq_version();
    CHECK(v && v[0]);
}

static void args_optvq_status_string(void)
{
    for (int s = OPTVQ_OK; s <= OPTVQ_ERR_STATE; s++)
        CHECK(one_line(optvq_status_string((optvq_status)s)));
    CHECK(one_line(optvq_status_string((optvq_status)-1)));
    CHECK(one_line(optvq_status_string((optvq_status)99)));
}

static void args_optvq_last_error(void)
{
    optvq_clear_error();
    CHECK(optvq_last_error() && optvq_last_error()[0] == '\0');
    optvq_status st = optvq_usage_compute(NULL, 1, 1, NULL);
    CHECK(st != OPTVQ_OK && one_line(optvq_last_error()));
}

static void args_optvq_set_num_threads(void)
{
    optvq_set_num_threads(0);
    const int all = optvq_get_num_threads();
    optvq_set_num_threads(3);
    CHECK(optvq_get_num_threads() == 3);
    optvq_set_num_threads(-5); /* negative: all cores, as 0 */
    CHECK(optvq_get_num_threads() == all);
    optvq_set_num_threads(INT_MIN);
    CHECK(optvq_get_num_threads() == all);
    optvq_set_num_threads(INT_MAX); /* clamped, not a billion threads */
    CHECK(optvq_get_num_threads() >= 1 && optvq_get_num_threads() <= 1024);
    optvq_set_num_threads(0);
}

static void args_optvq_get_num_threads(void) { CHECK(optvq_get_num_threads() >= 1); }

/* ---- quantizer ---- */

static void args_optvq_quantizer_config_default(void)
{
    optvq_quantizer_config_default(NULL); /* no-op */
    optvq_quantizer_config c;
    optvq_quantizer_config_default(&c);
    CHECK(c.n_e == 1024 && c.e_dim == 256 && c.num_head == 1);
}

static void args_optvq_quantizer_create(void)
{
    optvq_quantizer_config c;
    small_config(&c);
    optvq_quantizer *q = NULL;
    CHECK_OK(optvq_quantizer_create(&c, 1, &q));
    optvq_quantizer_free(q);

    q = (optvq_quantizer *)&c; /* must be reset to NULL on failure */
    REFUSED(optvq_quantizer_create(NULL, 1, &q));
    CHECK(q == NULL);
    REFUSED(optvq_quantizer_create(&c, 1, NULL));

    struct { const char *what; optvq_quantizer_config c; optvq_status want; } bad[32];
    int n = 0;
#define BAD(field, value, status)                      \
    do {                                               \
        bad[n].what = #field " = " #value;             \
        small_config(&bad[n].c);                       \
        bad[n].c.field = value;                        \
        bad[n++].want = status;                        \
    } while (0)
    BAD(n_e, 0, OPTVQ_ERR_INVALID_ARG);
    BAD(n_e, -1, OPTVQ_ERR_INVALID_ARG);
    BAD(n_e, INT64_MAX, OPTVQ_ERR_INVALID_ARG);
    BAD(n_e, INT64_MIN, OPTVQ_ERR_INVALID_ARG);
    BAD(e_dim, 0, OPTVQ_ERR_INVALID_ARG);
    BAD(e_dim, -4, OPTVQ_ERR_INVALID_ARG);
    BAD(e_dim, INT64_MAX, OPTVQ_ERR_INVALID_ARG);
    BAD(num_head, 0, OPTVQ_ERR_INVALID_ARG);
    BAD(num_head, -2, OPTVQ_ERR_INVALID_ARG);
    BAD(num_head, 3, OPTVQ_ERR_INVALID_ARG); /* does not divide e_dim */
    BAD(assign, (optvq_assign)2, OPTVQ_ERR_INVALID_ARG);
    BAD(assign, (optvq_assign)-1, OPTVQ_ERR_INVALID_ARG);
    BAD(normalize, (optvq_normalize)3, OPTVQ_ERR_INVALID_ARG);
    BAD(normalize, (optvq_normalize)-1, OPTVQ_ERR_INVALID_ARG);
    BAD(loss, (optvq_loss)3, OPTVQ_ERR_INVALID_ARG);
    BAD(loss, (optvq_loss)-1, OPTVQ_ERR_INVALID_ARG);
    BAD(epsilon, 0.0f, OPTVQ_ERR_INVALID_ARG);
    BAD(epsilon, -1.0f, OPTVQ_ERR_INVALID_ARG);
    BAD(epsilon, NAN, OPTVQ_ERR_INVALID_ARG);
    BAD(beta, INFINITY, OPTVQ_ERR_INVALID_ARG);
    BAD(n_iters, -1, OPTVQ_ERR_INVALID_ARG);
    BAD(n_iters, INT_MAX, OPTVQ_ERR_INVALID_ARG);
#undef BAD
    /* each size fits alone, their product (a 2^51-byte codebook) does not */
    small_config(&bad[n].c);
    bad[n].what = "n_e = 2^31, e_dim = 2^20";
    bad[n].c.n_e = (int64_t)1 << 31;
    bad[n].c.e_dim = (int64_t)1 << 20;
    bad[n].c.num_head = 1;
    bad[n++].want = OPTVQ_ERR_NOMEM;
    for (int i = 0; i < n; i++) {
        q = NULL;
        optvq_clear_error();
        check_refused(bad[i].what, optvq_quantizer_create(&bad[i].c, 1, &q), bad[i].want, __LINE__);
        CHECK_MSG(q == NULL, "%s: a quantizer was returned", bad[i].what);
    }
}

static void args_optvq_quantizer_free(void)
{
    optvq_quantizer_free(NULL); /* no-op */
    optvq_quantizer_free(small_quantizer());
}

static void args_optvq_quantizer_get_config(void)
{
    CHECK(FRESH(optvq_quantizer_get_config(NULL)) == NULL);
    MESSAGE_IS_ONE_LINE();
    optvq_quantizer *q = small_quantizer();
    const optvq_quantizer_config *c = optvq_quantizer_get_config(q);
    CHECK(c && c->n_e == QN_E);
    optvq_quantizer_free(q);
}

/* optvq_quantizer_param and _grad take the same arguments. */
static void check_param_getter(float *(*get)(optvq_quantizer *, optvq_param, int64_t *))
{
    optvq_quantizer *q = small_quantizer();
    int64_t count = -7;
    CHECK(get(q, OPTVQ_PARAM_EMBEDDING, &count) != NULL && count == QN_E * QE_DIM / QHEADS);
    CHECK(get(q, OPTVQ_PARAM_PROJ_BIAS, NULL) != NULL); /* count may be NULL */
    count = -7;
    CHECK(FRESH(get(NULL, OPTVQ_PARAM_EMBEDDING, &count)) == NULL && count == 0);
    MESSAGE_IS_ONE_LINE();
    CHECK(get(NULL, OPTVQ_PARAM_EMBEDDING, NULL) == NULL);
    count = -7;
    CHECK(FRESH(get(q, (optvq_param)3, &count)) == NULL && count == 0);
    MESSAGE_IS_ONE_LINE();
    count = -7;
    CHECK(get(q, (optvq_param)-1, &count) == NULL && count == 0);
    optvq_quantizer_free(q);
}

static void args_optvq_quantizer_param(void) { check_param_getter(optvq_quantizer_param); }
static void args_optvq_quantizer_grad(void) { check_param_getter(optvq_quantizer_grad); }

static void args_optvq_quantizer_zero_grad(void)
{
    optvq_quantizer_zero_grad(NULL); /* no-op */
    optvq_quantizer *q = small_quantizer();
    int64_t n;
    float *g = optvq_quantizer_grad(q, OPTVQ_PARAM_EMBEDDING, &n);
    if (g) {
        g[0] = 1.0f;
        optvq_quantizer_zero_grad(q);
        CHECK(g[0] == 0.0f);
    }
    optvq_quantizer_free(q);
}

static void args_optvq_quantizer_forward(void)
{
    optvq_quantizer *q = small_quantizer();
    float x[QNUMEL], xq[QNUMEL], loss;
    int64_t idx[QCODES];
    fill(x, QNUMEL);
    CHECK_OK(optvq_quantizer_forward(q, x, QB, QH, QW, xq, idx, &loss));
    CHECK_OK(optvq_quantizer_forward(q, x, QB, QH, QW, NULL, NULL, NULL)); /* outputs may be NULL */
    /* the crash: x NULL */
    REFUSED(optvq_quantizer_forward(q, NULL, 4, 1, 1, xq, NULL, NULL));
    REFUSED(optvq_quantizer_forward(NULL, x, QB, QH, QW, xq, idx, &loss));
    REFUSED(optvq_quantizer_forward(q, NULL, QB, QH, QW, xq, idx, &loss));
    REFUSED(optvq_quantizer_forward(q, x, -1, QH, QW, xq, idx, &loss));
    REFUSED(optvq_quantizer_forward(q, x, INT64_MIN, QH, QW, xq, idx, &loss));
    REFUSED(optvq_quantizer_forward(q, x, QB, 0, QW, xq, idx, &loss));
    REFUSED(optvq_quantizer_forward(q, x, QB, -1, QW, xq, idx, &loss));
    REFUSED(optvq_quantizer_forward(q, x, QB, QH, 0, xq, idx, &loss));
    REFUSED(optvq_quantizer_forward(q, x, QB, QH, -3, xq, idx, &loss));
    REFUSED_AS(OPTVQ_ERR_NOMEM, optvq_quantizer_forward(q, x, INT64_MAX, QH, QW, xq, idx, &loss));
    REFUSED_AS(OPTVQ_ERR_NOMEM, optvq_quantizer_forward(q, x, QB, INT64_MAX, INT64_MAX, xq, idx, &loss));
    REFUSED_AS(OPTVQ_ERR_NOMEM, optvq_quantizer_forward(q, x, 0, INT64_MAX, QW, xq, idx, &loss));
    /* batch 0 is valid (documented): nothing written, loss NaN */
    loss = 0.0f;
    CHECK_OK(optvq_quantizer_forward(q, x, 0, QH, QW, xq, idx, &loss));
    CHECK(isnan(loss));
    optvq_quantizer_free(q);
}

static void args_optvq_quantizer_backward(void)
{
    optvq_quantizer *q = small_quantizer();
    float x[QNUMEL], xq[QNUMEL], gxq[QNUMEL], gx[QNUMEL] = {0};
    fill(x, QNUMEL);
    fill(gxq, QNUMEL);
    REFUSED_AS(OPTVQ_ERR_STATE, optvq_quantizer_backward(q, gxq, 1.0f, gx)); /* before any forward */
    CHECK_OK(optvq_quantizer_forward(q, x, QB, QH, QW, xq, NULL, NULL));
    CHECK_OK(optvq_quantizer_backward(q, gxq, 1.0f, gx));
    CHECK_OK(optvq_quantizer_backward(q, NULL, 1.0f, NULL)); /* both may be NULL */
    REFUSED(optvq_quantizer_backward(NULL, gxq, 1.0f, gx));
    REFUSED(optvq_quantizer_backward(q, gxq, NAN, gx));
    REFUSED(optvq_quantizer_backward(q, gxq, -INFINITY, gx));
    optvq_quantizer_free(q);
}

static void args_optvq_quantizer_set_assign(void)
{
    optvq_quantizer *q = small_quantizer();
    CHECK_OK(optvq_quantizer_set_assign(q, OPTVQ_ASSIGN_NEAREST));
    REFUSED(optvq_quantizer_set_assign(NULL, OPTVQ_ASSIGN_NEAREST));
    REFUSED(optvq_quantizer_set_assign(q, (optvq_assign)2));
    REFUSED(optvq_quantizer_set_assign(q, (optvq_assign)-1));
    CHECK(optvq_quantizer_get_config(q)->assign == OPTVQ_ASSIGN_NEAREST);
    optvq_quantizer_free(q);
}

static void args_optvq_quantizer_codebook(void)
{
    optvq_quantizer *q = small_quantizer();
    float cb[QN_E * QE_DIM / QHEADS];
    CHECK_OK(optvq_quantizer_codebook(q, cb));
    REFUSED(optvq_quantizer_codebook(NULL, cb));
    REFUSED(optvq_quantizer_codebook(q, NULL));
    optvq_quantizer_free(q);
}

static void args_optvq_quantizer_decode(void)
{
    optvq_quantizer *q = small_quantizer();
    float x[QNUMEL], xq[QNUMEL];
    int64_t idx[QCODES];
    fill(x, QNUMEL);
    CHECK_OK(optvq_quantizer_forward(q, x, QB, QH, QW, NULL, idx, NULL));
    CHECK_OK(optvq_quantizer_decode(q, idx, QB, QH, QW, xq));
    CHECK_OK(optvq_quantizer_decode(q, idx, 0, QH, QW, xq)); /* empty batch, as forward */
    REFUSED(optvq_quantizer_decode(NULL, idx, QB, QH, QW, xq));
    REFUSED(optvq_quantizer_decode(q, NULL, QB, QH, QW, xq));
    REFUSED(optvq_quantizer_decode(q, idx, QB, QH, QW, NULL));
    REFUSED(optvq_quantizer_decode(q, idx, -1, QH, QW, xq));
    REFUSED(optvq_quantizer_decode(q, idx, QB, 0, QW, xq));
    REFUSED(optvq_quantizer_decode(q, idx, QB, -2, QW, xq));
    REFUSED(optvq_quantizer_decode(q, idx, QB, QH, 0, xq));
    REFUSED(optvq_quantizer_decode(q, idx, QB, QH, INT64_MIN, xq));
    REFUSED_AS(OPTVQ_ERR_NOMEM, optvq_quantizer_decode(q, idx, INT64_MAX, INT64_MAX, QW, xq));
    idx[1] = -1;
    REFUSED(optvq_quantizer_decode(q, idx, QB, QH, QW, xq));
    idx[1] = QN_E;
    REFUSED(optvq_quantizer_decode(q, idx, QB, QH, QW, xq));
    optvq_quantizer_free(q);
}

static void args_optvq_usage_compute(void)
{
    int64_t idx[4] = {0, 1, 1, 3};
    optvq_usage u;
    CHECK_OK(optvq_usage_compute(idx, 4, 4, &u));
    CHECK_OK(optvq_usage_compute(idx, 0, 4, &u)); /* no indices: valid, nothing used */
    CHECK(u.codes_used == 0 && u.dead_codes == 4);
    REFUSED(optvq_usage_compute(NULL, 4, 4, &u));
    REFUSED(optvq_usage_compute(idx, 4, 4, NULL));
    REFUSED(optvq_usage_compute(idx, -1, 4, &u));
    REFUSED(optvq_usage_compute(idx, 4, 0, &u));
    REFUSED(optvq_usage_compute(idx, 4, -4, &u));
    REFUSED(optvq_usage_compute(idx, 4, INT64_MAX, &u));
    REFUSED(optvq_usage_compute(idx, 4, 3, &u)); /* index 3 outside [0, 3) */
}

/* ---- model ---- */

static void args_optvq_model_create(void)
{
    optvq_model *m = NULL;
    CHECK_OK(optvq_model_create(model_config_path(), 1, &m));
    optvq_model_free(m);
    m = (optvq_model *)&m; /* must be reset to NULL on failure */
    REFUSED(optvq_model_create(NULL, 1, &m));
    CHECK(m == NULL);
    REFUSED(optvq_model_create(model_config_path(), 1, NULL));
    optvq_clear_error();
    CHECK(optvq_model_create(tmp_path("no-such-config.yaml"), 1, &m) != OPTVQ_OK);
    CHECK(m == NULL && one_line(optvq_last_error()));
}

static void args_optvq_model_free(void)
{
    optvq_model_free(NULL); /* no-op */
    optvq_model_free(small_model());
}

static void args_optvq_model_save(void)
{
    optvq_model *m = small_model();
    CHECK_OK(optvq_model_save(m, tmp_path("api_args_model")));
    REFUSED(optvq_model_save(NULL, tmp_path("api_args_null")));
    REFUSED(optvq_model_save(m, NULL));
    optvq_model_free(m);
}

static void args_optvq_model_load(void)
{
    optvq_model *m = small_model();
    const char *dir = tmp_path("api_args_load");
    CHECK_OK(optvq_model_save(m, dir));
    optvq_model_free(m);
    m = NULL;
    CHECK_OK(optvq_model_load(dir, NULL, &m)); /* weights may be NULL: a model folder */
    optvq_model_free(m);
    m = (optvq_model *)&m;
    REFUSED(optvq_model_load(NULL, NULL, &m));
    CHECK(m == NULL);
    REFUSED(optvq_model_load(dir, NULL, NULL));
    REFUSED(optvq_model_load(NULL, tmp_path("api_args_load/model.safetensors"), &m));
    optvq_clear_error();
    CHECK(optvq_model_load(model_config_path(), tmp_path("no-such-weights.safetensors"), &m) != OPTVQ_OK);
    CHECK(m == NULL && one_line(optvq_last_error()));
}

static void args_optvq_model_get_info(void)
{
    optvq_model *m = small_model();
    optvq_model_info info;
    CHECK_OK(optvq_model_get_info(m, &info));
    REFUSED(optvq_model_get_info(NULL, &info));
    REFUSED(optvq_model_get_info(m, NULL));
    optvq_model_free(m);
}

static void args_optvq_model_set_assign(void)
{
    FRESH(optvq_model_set_assign(NULL, OPTVQ_ASSIGN_NEAREST)); /* no-op */
    MESSAGE_IS_ONE_LINE();
    optvq_model *m = small_model();
    optvq_model_info info;
    optvq_model_set_assign(m, OPTVQ_ASSIGN_NEAREST);
    CHECK_OK(optvq_model_get_info(m, &info));
    CHECK(info.assign == OPTVQ_ASSIGN_NEAREST);
    /* an unknown value changes nothing, in the model or its quantizer */
    FRESH(optvq_model_set_assign(m, (optvq_assign)5));
    MESSAGE_IS_ONE_LINE();
    optvq_model_set_assign(m, (optvq_assign)-1);
    CHECK_OK(optvq_model_get_info(m, &info));
    CHECK(info.assign == OPTVQ_ASSIGN_NEAREST);
    CHECK(optvq_quantizer_get_config(optvq_model_quantizer(m))->assign == OPTVQ_ASSIGN_NEAREST);
    optvq_model_free(m);
}

static void args_optvq_model_set_precision(void)
{
    CHECK(FRESH(optvq_model_set_precision(NULL, OPTVQ_PRECISION_BF16)) == OPTVQ_ERR_INVALID_ARG);
    MESSAGE_IS_ONE_LINE();
    optvq_model *m = small_model();
    CHECK_OK(optvq_model_set_precision(m, OPTVQ_PRECISION_BF16_ALL));
    CHECK(optvq_model_get_precision(m) == OPTVQ_PRECISION_BF16_ALL);
    /* an unknown value changes nothing */
    CHECK(FRESH(optvq_model_set_precision(m, (optvq_precision)3)) == OPTVQ_ERR_INVALID_ARG);
    MESSAGE_IS_ONE_LINE();
    CHECK(FRESH(optvq_model_set_precision(m, (optvq_precision)-1)) == OPTVQ_ERR_INVALID_ARG);
    CHECK(optvq_model_get_precision(m) == OPTVQ_PRECISION_BF16_ALL);
    optvq_model_free(m);
}

static void args_optvq_model_get_precision(void)
{
    CHECK(optvq_model_get_precision(NULL) == OPTVQ_PRECISION_FP32);
    optvq_model *m = small_model();
    CHECK(optvq_model_get_precision(m) == OPTVQ_PRECISION_FP32); /* the default */
    optvq_model_free(m);
}

static void args_optvq_bf16_native(void)
{
    const int a = optvq_bf16_native(), b = optvq_bf16_native();
    CHECK((a == 0 || a == 1) && a == b);
}

static void args_optvq_model_quantizer(void)
{
    CHECK(FRESH(optvq_model_quantizer(NULL)) == NULL);
    MESSAGE_IS_ONE_LINE();
    optvq_model *m = small_model();
    CHECK(optvq_model_quantizer(m) != NULL);
    optvq_model_free(m);
}

/* Buffers for one 8x8 image through the plain model (f = 4). */
typedef struct {
    optvq_model *m;
    optvq_model_info info;
    int64_t side, grid;
    float *images, *latent, *out;
    int64_t *tokens;
} model_io;

static int model_io_open(model_io *io)
{
    memset(io, 0, sizeof *io);
    io->m = small_model();
    if (!io->m || optvq_model_get_info(io->m, &io->info) != OPTVQ_OK)
        return 0;
    io->side = 2 * io->info.downsample;
    io->grid = 2;
    const int64_t pixels = io->side * io->side, cells = io->grid * io->grid;
    io->images = malloc((size_t)(io->info.in_channels * pixels) * sizeof(float));
    io->out = malloc((size_t)(io->info.out_channels * pixels) * sizeof(float));
    io->latent = malloc((size_t)(io->info.e_dim * cells) * sizeof(float));
    io->tokens = malloc((size_t)(io->info.num_head * cells) * sizeof(int64_t));
    if (!io->images || !io->out || !io->latent || !io->tokens)
        return 0;
    fill(io->images, io->info.in_channels * pixels);
    return 1;
}

static void model_io_close(model_io *io)
{
    optvq_model_free(io->m);
    free(io->images);
    free(io->out);
    free(io->latent);
    free(io->tokens);
}

static void args_optvq_model_encode(void)
{
    model_io io;
    if (model_io_open(&io)) {
        optvq_model *m = io.m;
        const float *im = io.images;
        int64_t *t = io.tokens, s = io.side;
        float *lat = io.latent;
        CHECK_OK(optvq_model_encode(m, im, 1, s, s, t, lat));
        CHECK_OK(optvq_model_encode(m, im, 1, s, s, t, NULL)); /* latent may be NULL */
        REFUSED(optvq_model_encode(NULL, im, 1, s, s, t, lat));
        REFUSED(optvq_model_encode(m, NULL, 1, s, s, t, lat));
        REFUSED(optvq_model_encode(m, im, 1, s, s, NULL, lat));
        REFUSED(optvq_model_encode(m, im, 0, s, s, t, lat));
        REFUSED(optvq_model_encode(m, im, -1, s, s, t, lat));
        REFUSED(optvq_model_encode(m, im, 1, 0, s, t, lat));
        REFUSED(optvq_model_encode(m, im, 1, -s, s, t, lat));
        REFUSED(optvq_model_encode(m, im, 1, s, 0, t, lat));
        REFUSED(optvq_model_encode(m, im, 1, s, INT64_MIN, t, lat));
        REFUSED(optvq_model_encode(m, im, 1, s + 1, s, t, lat)); /* not a multiple of f */
        REFUSED_AS(OPTVQ_ERR_NOMEM, optvq_model_encode(m, im, INT64_MAX, s, s, t, lat));
        REFUSED_AS(OPTVQ_ERR_NOMEM, optvq_model_encode(m, im, 1, INT64_MAX - INT64_MAX % s, s, t, lat));
    }
    model_io_close(&io);
}

static void args_optvq_model_decode(void)
{
    model_io io;
    if (model_io_open(&io)) {
        optvq_model *m = io.m;
        int64_t *t = io.tokens, g = io.grid;
        float *out = io.out;
        CHECK_OK(optvq_model_encode(m, io.images, 1, io.side, io.side, t, NULL));
        CHECK_OK(optvq_model_decode(m, t, 1, g, g, out));
        REFUSED(optvq_model_decode(NULL, t, 1, g, g, out));
        REFUSED(optvq_model_decode(m, NULL, 1, g, g, out));
        REFUSED(optvq_model_decode(m, t, 1, g, g, NULL));
        REFUSED(optvq_model_decode(m, t, 0, g, g, out));
        REFUSED(optvq_model_decode(m, t, -1, g, g, out));
        REFUSED(optvq_model_decode(m, t, 1, 0, g, out));
        REFUSED(optvq_model_decode(m, t, 1, -g, g, out));
        REFUSED(optvq_model_decode(m, t, 1, g, 0, out));
        REFUSED(optvq_model_decode(m, t, 1, g, INT64_MIN, out));
        /* token_h * f would overflow int64 */
        REFUSED(optvq_model_decode(m, t, 1, INT64_MAX, g, out));
        REFUSED(optvq_model_decode(m, t, 1, g, INT64_MAX / 2, out));
        REFUSED_AS(OPTVQ_ERR_NOMEM, optvq_model_decode(m, t, INT64_MAX, g, g, out));
        t[0] = io.info.n_e; /* a token outside the codebook */
        REFUSED(optvq_model_decode(m, t, 1, g, g, out));
        t[0] = -1;
        REFUSED(optvq_model_decode(m, t, 1, g, g, out));
    }
    model_io_close(&io);
}

static void args_optvq_model_reconstruct(void)
{
    model_io io;
    if (model_io_open(&io)) {
        optvq_model *m = io.m;
        const float *im = io.images;
        int64_t *t = io.tokens, s = io.side;
        float *out = io.out;
        CHECK_OK(optvq_model_reconstruct(m, im, 1, s, s, out, t));
        CHECK_OK(optvq_model_reconstruct(m, im, 1, s, s, out, NULL)); /* tokens may be NULL */
        REFUSED(optvq_model_reconstruct(NULL, im, 1, s, s, out, t));
        REFUSED(optvq_model_reconstruct(m, NULL, 1, s, s, out, t));
        REFUSED(optvq_model_reconstruct(m, im, 1, s, s, NULL, t));
        REFUSED(optvq_model_reconstruct(m, im, 0, s, s, out, t));
        REFUSED(optvq_model_reconstruct(m, im, -2, s, s, out, t));
        REFUSED(optvq_model_reconstruct(m, im, 1, 0, s, out, t));
        REFUSED(optvq_model_reconstruct(m, im, 1, -1, s, out, t));
        REFUSED(optvq_model_reconstruct(m, im, 1, s, 0, out, t));
        REFUSED(optvq_model_reconstruct(m, im, 1, s, -s, out, t));
        REFUSED_AS(OPTVQ_ERR_NOMEM, optvq_model_reconstruct(m, im, INT64_MAX, s, s, out, t));
    }
    model_io_close(&io);
}

/* ---- .npy arrays ---- */

static void args_optvq_array_numel(void)
{
    CHECK(optvq_array_numel(NULL) == 0);
    optvq_array a = {OPTVQ_F32, 2, {3, 4}, NULL};
    CHECK(optvq_array_numel(&a) == 12);
    a.ndim = 0;
    CHECK(optvq_array_numel(&a) == 1); /* a scalar */
    a.ndim = -1;
    CHECK(optvq_array_numel(&a) == -1);
    a.ndim = OPTVQ_MAX_DIMS + 1;
    CHECK(optvq_array_numel(&a) == -1);
    a.ndim = 2;
    a.shape[1] = -4;
    CHECK(optvq_array_numel(&a) == -1);
    a.shape[0] = INT64_MAX;
    a.shape[1] = INT64_MAX;
    CHECK(optvq_array_numel(&a) == -1); /* the product would overflow */
}

static void args_optvq_npy_read(void)
{
    const int64_t shape[1] = {3};
    const float v[3] = {1, 2, 3};
    const char *p = tmp_path("api_args_read.npy");
    CHECK_OK(optvq_npy_write(p, OPTVQ_F32, 1, shape, v));
    optvq_array a;
    CHECK_OK(optvq_npy_read(p, &a));
    optvq_array_free(&a);
    a.data = (void *)v; /* must be reset on failure */
    REFUSED(optvq_npy_read(NULL, &a));
    CHECK(a.data == NULL);
    REFUSED(optvq_npy_read(p, NULL));
    REFUSED_AS(OPTVQ_ERR_IO, optvq_npy_read(tmp_path("api_args_missing.npy"), &a));
}

/* optvq_array_to_f32 and _to_i64 take the same argument. */
static void check_array_conversion(optvq_status (*convert)(optvq_array *))
{
    int32_t v[6] = {1, 2, 3, 4, 5, 6};
    optvq_array a = {OPTVQ_I32, 2, {2, 3}, NULL};
    a.data = malloc(sizeof v);
    if (!a.data)
        return;
    memcpy(a.data, v, sizeof v);
    CHECK_OK(convert(&a));
    optvq_array_free(&a);

    int32_t w[6] = {0};
    optvq_array bad = {OPTVQ_I32, 2, {2, 3}, w}; /* each case fails before touching data */
    REFUSED(convert(NULL));
    bad.data = NULL;
    REFUSED(convert(&bad));
    bad.data = w;
    bad.dtype = (optvq_dtype)99;
    REFUSED(convert(&bad));
    bad.dtype = (optvq_dtype)-1;
    REFUSED(convert(&bad));
    bad.dtype = OPTVQ_I32;
    bad.ndim = -1;
    REFUSED(convert(&bad));
    bad.ndim = OPTVQ_MAX_DIMS + 1;
    REFUSED(convert(&bad));
    bad.ndim = 2;
    bad.shape[0] = -2;
    REFUSED(convert(&bad));
    bad.shape[0] = INT64_MAX;
    bad.shape[1] = INT64_MAX;
    REFUSED(convert(&bad));
    /* an empty array needs no data */
    optvq_array empty = {OPTVQ_I32, 1, {0}, NULL};
    CHECK_OK(convert(&empty));
    optvq_array_free(&empty);
}

static void args_optvq_array_to_f32(void) { check_array_conversion(optvq_array_to_f32); }

static void args_optvq_array_to_i64(void)
{
    check_array_conversion(optvq_array_to_i64);
    float f[2] = {1, 2};
    optvq_array a = {OPTVQ_F32, 1, {2}, f};
    REFUSED_AS(OPTVQ_ERR_FORMAT, optvq_array_to_i64(&a)); /* floats are not silently truncated */
}

static void args_optvq_npy_write(void)
{
    const char *p = tmp_path("api_args_write.npy");
    const int64_t shape[2] = {2, 3};
    const float v[6] = {0};
    CHECK_OK(optvq_npy_write(p, OPTVQ_F32, 2, shape, v));
    CHECK_OK(optvq_npy_write(p, OPTVQ_F32, 0, NULL, v)); /* a scalar: shape may be NULL */
    const int64_t empty[2] = {0, 3};
    CHECK_OK(optvq_npy_write(p, OPTVQ_F32, 2, empty, NULL)); /* no elements: data may be NULL */
    REFUSED(optvq_npy_write(NULL, OPTVQ_F32, 2, shape, v));
    REFUSED(optvq_npy_write(p, (optvq_dtype)99, 2, shape, v));
    REFUSED(optvq_npy_write(p, (optvq_dtype)-1, 2, shape, v));
    REFUSED(optvq_npy_write(p, OPTVQ_F32, -1, shape, v));
    REFUSED(optvq_npy_write(p, OPTVQ_F32, OPTVQ_MAX_DIMS + 1, shape, v));
    REFUSED(optvq_npy_write(p, OPTVQ_F32, 2, NULL, v));
    REFUSED(optvq_npy_write(p, OPTVQ_F32, 2, shape, NULL));
    REFUSED(optvq_npy_write(p, OPTVQ_F32, 0, NULL, NULL));
    const int64_t negative[2] = {2, -3}, huge[2] = {INT64_MAX, INT64_MAX};
    REFUSED(optvq_npy_write(p, OPTVQ_F32, 2, negative, v));
    REFUSED(optvq_npy_write(p, OPTVQ_F32, 2, huge, v));
    /* a refused write leaves the last good file in place */
    optvq_array a;
    CHECK_OK(optvq_npy_read(p, &a));
    CHECK(a.ndim == 2 && a.shape[0] == 0 && a.shape[1] == 3);
    optvq_array_free(&a);
}

static void args_optvq_array_free(void)
{
    optvq_array_free(NULL); /* no-op */
    optvq_array a = {OPTVQ_F32, 1, {4}, malloc(16)};
    optvq_array_free(&a);
    CHECK(a.data == NULL && a.ndim == 0);
    optvq_array_free(&a); /* twice: still fine */
}

/* ---- training (optvq/train.h): a tiny run of the small plain CNN ---- */

static void tiny_train_options(optvq_train_options *o, const char *dir)
{
    optvq_train_options_default(o);
    o->config = "tests/ref/train/config.yaml";
    o->out = tmp_path(dir);
    o->data = "fashion-mnist";
    o->limit = 32;
    o->batch_size = 16;
    o->epochs = 1;
    o->val_limit = 0;
    o->threads = 1;
    o->force = 1;
}

static void args_optvq_train_options_default(void)
{
    optvq_train_options_default(NULL); /* no-op */
    optvq_train_options o;
    memset(&o, 0x55, sizeof o);
    optvq_train_options_default(&o);
    CHECK(o.config == NULL && o.epochs == -1 && o.batch_size == -1 && o.seed == -1 && o.lr < 0 &&
          o.val_limit == 1000 && !o.resume && !o.force);
}

static void args_optvq_train_create(void)
{
    optvq_train_options o;
    optvq_train *t = NULL;
    tiny_train_options(&o, "api_train_create");
    CHECK_OK(optvq_train_create(&o, &t));
    CHECK_OK(optvq_train_run(t, NULL, NULL)); /* the folder holds a run now */
    optvq_train_free(t);
    t = (optvq_train *)&t; /* reset to NULL on failure */
    REFUSED(optvq_train_create(NULL, &t));
    CHECK(t == NULL);
    REFUSED(optvq_train_create(&o, NULL));
    optvq_train_options bad = o;
    bad.config = NULL;
    REFUSED(optvq_train_create(&bad, &t));
    bad = o;
    bad.out = "";
    REFUSED(optvq_train_create(&bad, &t));
    bad = o;
    bad.resume = 1; /* with force */
    REFUSED(optvq_train_create(&bad, &t));
    bad = o;
    bad.epochs = -5;
    REFUSED(optvq_train_create(&bad, &t));
    bad = o;
    bad.batch_size = 0;
    REFUSED(optvq_train_create(&bad, &t));
    bad = o;
    bad.lr = NAN;
    REFUSED(optvq_train_create(&bad, &t));
    bad = o;
    bad.threads = -1;
    REFUSED(optvq_train_create(&bad, &t));
    bad = o;
    bad.force = 0; /* the folder holds the run made above */
    REFUSED_AS(OPTVQ_ERR_STATE, optvq_train_create(&bad, &t));
    CHECK(t == NULL);
    optvq_train_free(t);
}

static void args_optvq_train_free(void)
{
    optvq_train_free(NULL); /* no-op */
}

static void args_optvq_train_is_finished(void)
{
    CHECK(optvq_train_is_finished(NULL) == 0);
}

static void args_optvq_train_run_dir(void)
{
    CHECK(optvq_train_run_dir(NULL) == NULL);
    optvq_train_options o;
    optvq_train *t = NULL;
    tiny_train_options(&o, "api_train_dir");
    CHECK_OK(optvq_train_create(&o, &t));
    CHECK(optvq_train_run_dir(t) != NULL);
    optvq_train_free(t);
}

static void args_optvq_train_model(void)
{
    CHECK(optvq_train_model(NULL) == NULL);
}

static int count_steps(const optvq_train_report *r, void *user)
{
    if (r->event == OPTVQ_TRAIN_STEP)
        ++*(int *)user;
    return 0;
}

static void args_optvq_train_run(void)
{
    REFUSED(optvq_train_run(NULL, NULL, NULL));
    optvq_train_options o;
    optvq_train *t = NULL;
    tiny_train_options(&o, "api_train_run");
    CHECK_OK(optvq_train_create(&o, &t));
    int steps = 0;
    CHECK_OK(optvq_train_run(t, count_steps, &steps));
    CHECK(steps == 2); /* 32 images, batch 16 */
    CHECK(optvq_train_model(t) != NULL);
    optvq_train_free(t);
}

/* ---- the table: one entry per public function ---- */

#define API(fn) {#fn, args_##fn}
static const struct {
    const char *name;
    void (*check)(void);
} api[] = {
    API(optvq_version),
    API(optvq_status_string),
    API(optvq_last_error),
    API(optvq_set_num_threads),
    API(optvq_get_num_threads),
    API(optvq_quantizer_config_default),
    API(optvq_quantizer_create),
    API(optvq_quantizer_free),
    API(optvq_quantizer_get_config),
    API(optvq_quantizer_param),
    API(optvq_quantizer_grad),
    API(optvq_quantizer_zero_grad),
    API(optvq_quantizer_forward),
    API(optvq_quantizer_backward),
    API(optvq_quantizer_set_assign),
    API(optvq_quantizer_codebook),
    API(optvq_quantizer_decode),
    API(optvq_usage_compute),
    API(optvq_model_load),
    API(optvq_model_create),
    API(optvq_model_free),
    API(optvq_model_save),
    API(optvq_model_get_info),
    API(optvq_model_set_assign),
    API(optvq_model_set_precision),
    API(optvq_model_get_precision),
    API(optvq_bf16_native),
    API(optvq_model_quantizer),
    API(optvq_model_encode),
    API(optvq_model_decode),
    API(optvq_model_reconstruct),
    API(optvq_array_numel),
    API(optvq_npy_read),
    API(optvq_array_to_f32),
    API(optvq_array_to_i64),
    API(optvq_npy_write),
    API(optvq_array_free),
    API(optvq_train_options_default),
    API(optvq_train_create),
    API(optvq_train_free),
    API(optvq_train_is_finished),
    API(optvq_train_run_dir),
    API(optvq_train_model),
    API(optvq_train_run),
};

TEST(api_args_every_public_function)
{
    for (size_t i = 0; i < sizeof api / sizeof api[0]; i++) {
        const int before = test_failures;
        api[i].check();
        if (test_failures != before)
            fprintf(stderr, "    ^ %s\n", api[i].name);
    }
    printf("    %zu public functions checked\n", sizeof api / sizeof api[0]);
}
