/* Taming AttnBlock as one unit:
 *   h = GroupNorm(x); q, k, v = 1x1 convs of h;
 *   A = softmax_j( q[:, i] . k[:, j] / sqrt(c) )  (hw, hw);
 *   o = v A^T; y = x + proj_out(o).
 * Per image, every product is a GEMM split over threads (nn_sgemm). */
#include "core/error.h"
#include "nn/nn.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

size_t nn_attn_saved(const nn_attn_desc *d)
{
    const size_t cp = (size_t)(d->c * d->h * d->w), pp = (size_t)(d->h * d->w) * (size_t)(d->h * d->w);
    return (size_t)d->n * (5 * cp + pp);
}

size_t nn_attn_workspace(const nn_attn_desc *d)
{
    const size_t cp = (size_t)(d->c * d->h * d->w), pp = (size_t)(d->h * d->w) * (size_t)(d->h * d->w);
    return 5 * cp + pp;
}

static optvq_status check(const nn_attn_desc *d, const char *op)
{
    if (!d || d->n <= 0 || d->c <= 0 || d->h <= 0 || d->w <= 0 || d->groups <= 0 ||
        d->c % d->groups)
        return optvq_fail(OPTVQ_ERR_INVALID_ARG, "%s: bad shape or groups", op);
    return OPTVQ_OK;
}

/* Saved-state layout for image n (each (c, hw) or (hw, hw)). */
typedef struct attn_bufs {
    float *h, *q, *k, *v, *o, *a;
} attn_bufs;

static attn_bufs saved_bufs(float *base, const nn_attn_desc *d, int64_t n)
{
    const int64_t cp = d->c * d->h * d->w, P = d->h * d->w, N = d->n;
    attn_bufs b;
    b.h = base + (0 * N + n) * cp;
    b.q = base + (1 * N + n) * cp;
    b.k = base + (2 * N + n) * cp;
    b.v = base + (3 * N + n) * cp;
    b.o = base + (4 * N + n) * cp;
    b.a = base + 5 * N * cp + n * P * P;
    return b;
}

/* out (C, P) = w (C, C) in (C, P) + bias */
static void conv1x1(float *out, const float *w, const float *bias, const float *in, int64_t C,
                    int64_t P)
{
    for (int64_t c = 0; c < C; c++)
        for (int64_t p = 0; p < P; p++)
            out[c * P + p] = bias[c];
    nn_sgemm(0, 0, C, P, C, 1.0f, w, C, in, P, 1.0f, out, P);
}

optvq_status nn_attn_forward(float *y, float *saved, const float *x, const nn_attn_params *p,
                             const nn_attn_desc *d, nn_workspace *ws)
{
    OPTVQ_TRY(check(d, "attn_forward"));
    if (!y || !x || !p)
        return optvq_fail(OPTVQ_ERR_INVALID_ARG, "attn_forward: NULL argument");
    if (!saved)
        OPTVQ_TRY(nn_workspace_check(ws, nn_attn_workspace(d), "attn_forward"));
    const int64_t C = d->c, P = d->h * d->w;
    const float scale = (float)(1.0 / sqrt((double)C));
    for (int64_t n = 0; n < d->n; n++) {
        attn_bufs b;
        if (saved) {
            b = saved_bufs(saved, d, n);
        } else { /* inference: one image's worth of scratch */
            float *s = ws->data;
            b.h = s;
            b.q = s + C * P;
            b.k = s + 2 * C * P;
            b.v = s + 3 * C * P;
            b.o = s + 4 * C * P;
            b.a = s + 5 * C * P;
        }
        const float *xn = x + n * C * P;
        float *yn = y + n * C * P;
        OPTVQ_TRY(nn_group_norm_forward(b.h, xn, p->norm_w, p->norm_b, 1, C, P, d->groups, d->eps));
        conv1x1(b.q, p->q_w, p->q_b, b.h, C, P);
        conv1x1(b.k, p->k_w, p->k_b, b.h, C, P);
        conv1x1(b.v, p->v_w, p->v_b, b.h, C, P);
        /* a (P, P) = scale q^T k ; softmax over j */
        nn_sgemm(1, 0, P, P, C, scale, b.q, P, b.k, P, 0.0f, b.a, P);
        nn_softmax_forward(b.a, b.a, P, P);
        /* o (C, P) = v (C, P) a^T (P, P) */
        nn_sgemm(0, 1, C, P, P, 1.0f, b.v, P, b.a, P, 0.0f, b.o, P);
        /* y = x + proj_w o + proj_b */
        for (int64_t c = 0; c < C; c++)
            for (int64_t q = 0; q < P; q++)
                yn[c * P + q] = xn[c * P + q] + p->proj_b[c];
        nn_sgemm(0, 0, C, P, C, 1.0f, p->proj_w, C, b.o, P, 1.0f, yn, P);
    }
    return OPTVQ_OK;
}

static void rowsum_acc(float *db, const float *m, int64_t C, int64_t P)
{
    if (!db)
        return;
    for (int64_t c = 0; c < C; c++) {
        double s = 0;
        for (int64_t q = 0; q < P; q++)
            s += m[c * P + q];
        db[c] += (float)s;
    }
}

optvq_status nn_attn_backward(float *dx, const nn_attn_grads *g, const float *dy,
                              const float *saved, const float *x, const nn_attn_params *p,
                              const nn_attn_desc *d, nn_workspace *ws)
{
    OPTVQ_TRY(check(d, "attn_backward"));
    if (!dy || !saved || !x || !p || !g)
        return optvq_fail(OPTVQ_ERR_INVALID_ARG, "attn_backward: NULL argument (saved state needed)");
    OPTVQ_TRY(nn_workspace_check(ws, nn_attn_workspace(d), "attn_backward"));
    const int64_t C = d->c, P = d->h * d->w;
    const float scale = (float)(1.0 / sqrt((double)C));
    float *d_o = ws->data, *dv = d_o + C * P, *dq = dv + C * P, *dk = dq + C * P,
          *dh = dk + C * P, *ds = dh + C * P; /* (C,P) x5, (P,P) */
    for (int64_t n = 0; n < d->n; n++) {
        attn_bufs b = saved_bufs((float *)saved, d, n);
        const float *dyn = dy + n * C * P, *xn = x + n * C * P;
        if (dx) /* residual */
            for (int64_t i = 0; i < C * P; i++)
                dx[n * C * P + i] += dyn[i];
        /* proj_out */
        if (g->proj_w) /* dWp (C, C) += dy (C, P) o^T */
            nn_sgemm(0, 1, C, C, P, 1.0f, dyn, P, b.o, P, 1.0f, g->proj_w, C);
        rowsum_acc(g->proj_b, dyn, C, P);
        /* do (C, P) = Wp^T dy */
        nn_sgemm(1, 0, C, P, C, 1.0f, p->proj_w, C, dyn, P, 0.0f, d_o, P);
        /* dv (C, P) = do a ; dA (P, P) = do^T v */
        nn_sgemm(0, 0, C, P, P, 1.0f, d_o, P, b.a, P, 0.0f, dv, P);
        nn_sgemm(1, 0, P, P, C, 1.0f, d_o, P, b.v, P, 0.0f, ds, P);
        /* softmax backward in place: ds = a * (dA - <dA, a>_row) */
        for (int64_t i = 0; i < P; i++) {
            float *r = ds + i * P;
            const float *ar = b.a + i * P;
            double dot = 0;
            for (int64_t j = 0; j < P; j++)
                dot += (double)r[j] * ar[j];
            for (int64_t j = 0; j < P; j++)
                r[j] = ar[j] * (r[j] - (float)dot);
        }
        /* dq (C, P) = scale k ds^T ; dk (C, P) = scale q ds */
        nn_sgemm(0, 1, C, P, P, scale, b.k, P, ds, P, 0.0f, dq, P);
        nn_sgemm(0, 0, C, P, P, scale, b.q, P, ds, P, 0.0f, dk, P);
        /* 1x1 convs q, k, v: weights and biases, then dh */
        const float *dqkv[3] = {dq, dk, dv};
        float *gw[3] = {g->q_w, g->k_w, g->v_w}, *gb[3] = {g->q_b, g->k_b, g->v_b};
        const float *pw[3] = {p->q_w, p->k_w, p->v_w};
        for (int t = 0; t < 3; t++) {
            if (gw[t]) /* dW (C, C) += dq (C, P) h^T */
                nn_sgemm(0, 1, C, C, P, 1.0f, dqkv[t], P, b.h, P, 1.0f, gw[t], C);
            rowsum_acc(gb[t], dqkv[t], C, P);
            /* dh (C, P) (+)= W^T dq */
            nn_sgemm(1, 0, C, P, C, 1.0f, pw[t], C, dqkv[t], P, t ? 1.0f : 0.0f, dh, P);
        }
        OPTVQ_TRY(nn_group_norm_backward(dx ? dx + n * C * P : NULL, g->norm_w, g->norm_b, dh, xn,
                                         p->norm_w, 1, C, P, d->groups, d->eps));
    }
    return OPTVQ_OK;
}

/* ---- naive reference: composed from naive ops, double accumulation ---- */


void nn_attn_forward_naive(float *y, const float *x, const nn_attn_params *p,
                           const nn_attn_desc *d)
{
    const int64_t C = d->c, P = d->h * d->w;
    float *h = malloc(sizeof(float) * (size_t)(C * P));
    double *q = malloc(sizeof(double) * (size_t)(3 * C * P + P * P + C * P));
    if (!h || !q) {
        free(h);
        free(q);
        return;
    }
    double *k = q + C * P, *v = k + C * P, *a = v + C * P, *o = a + P * P;
    for (int64_t n = 0; n < d->n; n++) {
        const float *xn = x + n * C * P;
        nn_group_norm_forward_naive(h, xn, p->norm_w, p->norm_b, 1, C, P, d->groups, d->eps);
        for (int64_t c = 0; c < C; c++)
            for (int64_t i = 0; i < P; i++) {
                double sq = p->q_b[c], sk = p->k_b[c], sv = p->v_b[c];
                for (int64_t e = 0; e < C; e++) {
                    sq += (double)p->q_w[c * C + e] * h[e * P + i];
                    sk += (double)p->k_w[c * C + e] * h[e * P + i];
                    sv += (double)p->v_w[c * C + e] * h[e * P + i];
                }
                q[c * P + i] = sq;
                k[c * P + i] = sk;
                v[c * P + i] = sv;
            }
        for (int64_t i = 0; i < P; i++) {
            double m = -INFINITY, s = 0;
            for (int64_t j = 0; j < P; j++) {
                double t = 0;
                for (int64_t c = 0; c < C; c++)
                    t += q[c * P + i] * k[c * P + j];
                a[i * P + j] = t / sqrt((double)C);
                m = a[i * P + j] > m ? a[i * P + j] : m;
            }
            for (int64_t j = 0; j < P; j++)
                s += (a[i * P + j] = exp(a[i * P + j] - m));
            for (int64_t j = 0; j < P; j++)
                a[i * P + j] /= s;
        }
        for (int64_t c = 0; c < C; c++)
            for (int64_t i = 0; i < P; i++) {
                double s = 0;
                for (int64_t j = 0; j < P; j++)
                    s += v[c * P + j] * a[i * P + j];
                o[c * P + i] = s;
            }
        for (int64_t c = 0; c < C; c++)
            for (int64_t i = 0; i < P; i++) {
                double s = (double)xn[c * P + i] + p->proj_b[c];
                for (int64_t e = 0; e < C; e++)
                    s += (double)p->proj_w[c * C + e] * o[e * P + i];
                y[n * C * P + c * P + i] = (float)s;
            }
    }
    free(h);
    free(q);
}
