/* Model configuration from the reference's YAML files (libyaml) or a Hugging
 * Face VQModelHF config.json (cJSON). YAML is first turned into a cJSON tree,
 * so one interpreter serves both. Unknown `target:` classes are refused by name. */
#include "core/atomic_file.h"
#include "core/error.h"
#include "model/model.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <yaml.h>

#define MAX_CONFIG_BYTES (16 << 20)

/* ---- YAML -> cJSON ---- */

static cJSON *yaml_scalar(const yaml_event_t *ev)
{
    const char *v = (const char *)ev->data.scalar.value;
    size_t len = ev->data.scalar.length;
    if (ev->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return cJSON_CreateString(v);
    if (!strcmp(v, "true") || !strcmp(v, "True") || !strcmp(v, "TRUE"))
        return cJSON_CreateTrue();
    if (!strcmp(v, "false") || !strcmp(v, "False") || !strcmp(v, "FALSE"))
        return cJSON_CreateFalse();
    if (!strcmp(v, "null") || !strcmp(v, "~") || !strcmp(v, "Null") || !strcmp(v, "NULL") || len == 0)
        return cJSON_CreateNull();
    char *end;
    errno = 0;
    double d = strtod(v, &end);
    if (end != v && *end == '\0' && !errno && isfinite(d))
        return cJSON_CreateNumber(d);
    return cJSON_CreateString(v);
}

/* Builds the node starting at the current event; returns NULL on error. */
static cJSON *yaml_node(yaml_parser_t *p, yaml_event_t *ev, int depth, const char *what)
{
    if (depth > 64) {
        optvq_fail(OPTVQ_ERR_FORMAT, "%s: YAML nested too deeply", what);
        return NULL;
    }
    if (ev->type == YAML_SCALAR_EVENT)
        return yaml_scalar(ev);
    if (ev->type == YAML_ALIAS_EVENT) {
        optvq_fail(OPTVQ_ERR_FORMAT, "%s: YAML aliases are not supported", what);
        return NULL;
    }
    int is_map = ev->type == YAML_MAPPING_START_EVENT;
    if (!is_map && ev->type != YAML_SEQUENCE_START_EVENT) {
        optvq_fail(OPTVQ_ERR_FORMAT, "%s: unexpected YAML structure", what);
        return NULL;
    }
    cJSON *node = is_map ? cJSON_CreateObject() : cJSON_CreateArray();
    for (;;) {
        yaml_event_t e;
        if (!yaml_parser_parse(p, &e)) {
            optvq_fail(OPTVQ_ERR_FORMAT, "%s: YAML error at line %zu: %s", what, p->problem_mark.line + 1,
                       p->problem ? p->problem : "?");
            cJSON_Delete(node);
            return NULL;
        }
        if (e.type == YAML_MAPPING_END_EVENT || e.type == YAML_SEQUENCE_END_EVENT) {
            yaml_event_delete(&e);
            return node;
        }
        if (!is_map) {
            cJSON *child = yaml_node(p, &e, depth + 1, what);
            yaml_event_delete(&e);
            if (!child) {
                cJSON_Delete(node);
                return NULL;
            }
            cJSON_AddItemToArray(node, child);
            continue;
        }
        if (e.type != YAML_SCALAR_EVENT) {
            yaml_event_delete(&e);
            optvq_fail(OPTVQ_ERR_FORMAT, "%s: YAML mapping keys must be plain strings", what);
            cJSON_Delete(node);
            return NULL;
        }
        char *key = strdup((const char *)e.data.scalar.value);
        yaml_event_delete(&e);
        yaml_event_t ve;
        if (!key || !yaml_parser_parse(p, &ve)) {
            optvq_fail(OPTVQ_ERR_FORMAT, "%s: YAML error at line %zu: %s", what, p->problem_mark.line + 1,
                       p->problem ? p->problem : "?");
            free(key);
            cJSON_Delete(node);
            return NULL;
        }
        cJSON *child = yaml_node(p, &ve, depth + 1, what);
        yaml_event_delete(&ve);
        if (!child) {
            free(key);
            cJSON_Delete(node);
            return NULL;
        }
        cJSON_DeleteItemFromObjectCaseSensitive(node, key); /* later keys win, as in YAML loaders */
        cJSON_AddItemToObject(node, key, child);
        free(key);
    }
}

static cJSON *parse_yaml(const char *text, size_t len, const char *what)
{
    yaml_parser_t p;
    if (!yaml_parser_initialize(&p)) {
        optvq_fail(OPTVQ_ERR_NOMEM, "%s: cannot start the YAML parser", what);
        return NULL;
    }
    yaml_parser_set_input_string(&p, (const unsigned char *)text, len);
    cJSON *root = NULL;
    for (;;) {
        yaml_event_t e;
        if (!yaml_parser_parse(&p, &e)) {
            optvq_fail(OPTVQ_ERR_FORMAT, "%s: YAML error at line %zu: %s", what, p.problem_mark.line + 1,
                       p.problem ? p.problem : "?");
            cJSON_Delete(root);
            root = NULL;
            break;
        }
        yaml_event_type_t t = e.type;
        if (t == YAML_MAPPING_START_EVENT || t == YAML_SEQUENCE_START_EVENT || t == YAML_SCALAR_EVENT) {
            if (!root) {
                root = yaml_node(&p, &e, 0, what);
                if (!root) {
                    yaml_event_delete(&e);
                    break;
                }
            }
        }
        yaml_event_delete(&e);
        if (t == YAML_STREAM_END_EVENT || t == YAML_DOCUMENT_END_EVENT)
            break;
    }
    yaml_parser_delete(&p);
    if (root && !cJSON_IsObject(root)) {
        cJSON_Delete(root);
        optvq_fail(OPTVQ_ERR_FORMAT, "%s: the config is not a mapping", what);
        return NULL;
    }
    if (!root && !optvq_last_error()[0])
        optvq_fail(OPTVQ_ERR_FORMAT, "%s: empty config", what);
    return root;
}

/* ---- typed lookups ---- */

typedef struct reader {
    const char *what; /* file name for messages */
    const char *section;
    optvq_status status;
} reader;

static int64_t get_int(reader *r, const cJSON *obj, const char *key, int64_t def, int64_t lo, int64_t hi)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!v || cJSON_IsNull(v))
        return def;
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || v->valuedouble < (double)lo ||
        v->valuedouble > (double)hi) {
        if (r->status == OPTVQ_OK)
            r->status = optvq_fail(OPTVQ_ERR_FORMAT, "%s: %s.%s must be an integer in [%lld, %lld]", r->what,
                                   r->section, key, (long long)lo, (long long)hi);
        return def;
    }
    return (int64_t)v->valuedouble;
}

static double get_num(reader *r, const cJSON *obj, const char *key, double def)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!v || cJSON_IsNull(v))
        return def;
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble)) { /* JSON's 1e999 parses as Inf */
        if (r->status == OPTVQ_OK)
            r->status = optvq_fail(OPTVQ_ERR_FORMAT, "%s: %s.%s must be a finite number", r->what, r->section, key);
        return def;
    }
    return v->valuedouble;
}

static int get_bool(reader *r, const cJSON *obj, const char *key, int def)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!v || cJSON_IsNull(v))
        return def;
    if (!cJSON_IsBool(v)) {
        if (r->status == OPTVQ_OK)
            r->status = optvq_fail(OPTVQ_ERR_FORMAT, "%s: %s.%s must be true or false", r->what, r->section, key);
        return def;
    }
    return cJSON_IsTrue(v);
}

static const char *get_str(reader *r, const cJSON *obj, const char *key, const char *def)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!v || cJSON_IsNull(v))
        return def;
    if (!cJSON_IsString(v)) {
        if (r->status == OPTVQ_OK)
            r->status = optvq_fail(OPTVQ_ERR_FORMAT, "%s: %s.%s must be a string", r->what, r->section, key);
        return def;
    }
    return v->valuestring;
}

static int get_list(reader *r, const cJSON *obj, const char *key, int64_t *out, int max, int n_def)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!v || cJSON_IsNull(v))
        return n_def;
    int n = cJSON_IsArray(v) ? cJSON_GetArraySize(v) : -1;
    if (n < 0 || n > max) {
        if (r->status == OPTVQ_OK)
            r->status = optvq_fail(OPTVQ_ERR_FORMAT, "%s: %s.%s must be a list of at most %d integers", r->what,
                                   r->section, key, max);
        return n_def;
    }
    for (int i = 0; i < n; i++) {
        const cJSON *e = cJSON_GetArrayItem(v, i);
        if (!cJSON_IsNumber(e) || e->valuedouble != floor(e->valuedouble) || e->valuedouble < 0 ||
            e->valuedouble > 1e6) {
            if (r->status == OPTVQ_OK)
                r->status = optvq_fail(OPTVQ_ERR_FORMAT, "%s: %s.%s must hold non-negative integers", r->what,
                                       r->section, key);
            return n_def;
        }
        out[i] = (int64_t)e->valuedouble;
    }
    return n;
}

/* The class name after the last '.' of a target path. */
static const char *class_name(const char *target)
{
    const char *dot = strrchr(target, '.');
    return dot ? dot + 1 : target;
}

/* ---- sections ---- */

static void read_taming(reader *r, const cJSON *p, coder_config *c, int is_encoder)
{
    r->section = is_encoder ? "encoder" : "decoder";
    c->arch = ARCH_TAMING;
    c->ch = get_int(r, p, "ch", 128, 1, 1 << 16);
    c->out_channels = get_int(r, p, "out_ch", 3, 1, 1 << 16);
    c->in_channels = get_int(r, p, "in_channels", 3, 1, 1 << 16);
    c->resolution = get_int(r, p, "resolution", 256, 1, 1 << 16);
    c->z_channels = get_int(r, p, "z_channels", 256, 1, 1 << 16);
    c->num_res_blocks = get_int(r, p, "num_res_blocks", 2, 0, 64);
    c->double_z = is_encoder ? get_bool(r, p, "double_z", 1) : 0;
    int64_t def_mult[4] = {1, 2, 4, 8};
    memcpy(c->ch_mult, def_mult, sizeof def_mult);
    c->n_levels = get_list(r, p, "ch_mult", c->ch_mult, MODEL_MAX_LEVELS, 4);
    c->n_attn = get_list(r, p, "attn_resolutions", c->attn_resolutions, MODEL_MAX_LEVELS, 0);
    if (r->status == OPTVQ_OK && c->n_levels < 1)
        r->status = optvq_fail(OPTVQ_ERR_FORMAT, "%s: %s.ch_mult is empty", r->what, r->section);
    for (int i = 0; i < c->n_levels && r->status == OPTVQ_OK; i++)
        if (c->ch_mult[i] < 1 || (c->ch * c->ch_mult[i]) % 32)
            r->status = optvq_fail(OPTVQ_ERR_FORMAT,
                                   "%s: %s: ch * ch_mult must be a positive multiple of 32 (GroupNorm groups)",
                                   r->what, r->section);
    if (r->status == OPTVQ_OK && !get_bool(r, p, "resamp_with_conv", 1))
        r->status = optvq_fail(OPTVQ_ERR_FORMAT, "%s: %s.resamp_with_conv: false is not supported", r->what,
                               r->section);
    if (r->status == OPTVQ_OK && !is_encoder && get_bool(r, p, "give_pre_end", 0))
        r->status = optvq_fail(OPTVQ_ERR_FORMAT, "%s: decoder.give_pre_end: true is not supported", r->what);
    if (r->status == OPTVQ_OK && (c->resolution >> (c->n_levels - 1)) << (c->n_levels - 1) != c->resolution)
        r->status = optvq_fail(OPTVQ_ERR_FORMAT, "%s: %s.resolution %lld is not divisible by 2^%d", r->what,
                               r->section, (long long)c->resolution, c->n_levels - 1);
    if (!is_encoder) {
        /* the decoder maps z_channels back to out_ch images */
        c->in_channels = c->z_channels;
    } else {
        c->out_channels = c->double_z ? 2 * c->z_channels : c->z_channels;
    }
}

static void read_coder(reader *r, const cJSON *spec, coder_config *c, int is_encoder)
{
    r->section = is_encoder ? "encoder" : "decoder";
    if (!cJSON_IsObject(spec)) {
        if (r->status == OPTVQ_OK)
            r->status = optvq_fail(OPTVQ_ERR_FORMAT, "%s: no %s section", r->what, r->section);
        return;
    }
    const char *target = get_str(r, spec, "target", NULL);
    const cJSON *params = cJSON_GetObjectItemCaseSensitive(spec, "params");
    if (!target) {
        if (r->status == OPTVQ_OK)
            r->status = optvq_fail(OPTVQ_ERR_FORMAT, "%s: %s has no target", r->what, r->section);
        return;
    }
    const char *cls = class_name(target);
    if (!strcmp(cls, is_encoder ? "PlainCNNEncoder" : "PlainCNNDecoder")) {
        c->arch = ARCH_PLAIN_CNN;
        if (is_encoder) {
            c->in_channels = get_int(r, params, "in_dim", 3, 1, 1 << 16);
            c->out_channels = 32;
        } else {
            c->out_channels = get_int(r, params, "out_dim", 3, 1, 1 << 16);
            c->in_channels = 32;
        }
        c->resolution = 32;
    } else if (!strcmp(cls, is_encoder ? "Encoder" : "Decoder")) {
        read_taming(r, params, c, is_encoder);
    } else if (r->status == OPTVQ_OK) {
        r->status = optvq_fail(OPTVQ_ERR_FORMAT, "%s: unknown %s target '%s'", r->what, r->section, target);
    }
}

static void read_quantizer(reader *r, const cJSON *p, int sinkhorn, optvq_quantizer_config *q)
{
    r->section = "quantize";
    optvq_quantizer_config_default(q);
    /* the reference class's own defaults, then the config's values */
    q->assign = sinkhorn ? OPTVQ_ASSIGN_SINKHORN : OPTVQ_ASSIGN_NEAREST;
    q->n_e = get_int(r, p, "n_e", 1024, 1, (int64_t)1 << 31);
    q->e_dim = get_int(r, p, "e_dim", 128, 1, 1 << 20);
    q->beta = (float)get_num(r, p, "beta", 1.0);
    q->use_proj = get_bool(r, p, "use_proj", 1);
    q->num_head = get_int(r, p, "num_head", 1, 1, 1 << 20);
    const char *loss = get_str(r, p, "loss_q_type", "ce");
    if (get_bool(r, p, "use_norm", 0) && r->status == OPTVQ_OK)
        r->status = optvq_fail(OPTVQ_ERR_FORMAT, "%s: quantize.use_norm: true is not supported (nor by the reference)",
                               r->what);
    if (!strcmp(loss, "l2"))
        q->loss = OPTVQ_LOSS_L2;
    else if (!strcmp(loss, "l1"))
        q->loss = OPTVQ_LOSS_L1;
    else if (!strcmp(loss, "ce"))
        q->loss = OPTVQ_LOSS_CE;
    else if (r->status == OPTVQ_OK)
        r->status = optvq_fail(OPTVQ_ERR_FORMAT, "%s: quantize.loss_q_type '%s' is not l2, l1 or ce", r->what, loss);
    if (sinkhorn) {
        q->epsilon = (float)get_num(r, p, "epsilon", 10.0);
        q->n_iters = (int)get_int(r, p, "n_iters", 5, 0, 10000);
        const char *mode = get_str(r, p, "normalize_mode", "all");
        if (!strcmp(mode, "all"))
            q->normalize = OPTVQ_NORMALIZE_ALL;
        else if (!strcmp(mode, "dim"))
            q->normalize = OPTVQ_NORMALIZE_DIM;
        else if (!strcmp(mode, "null"))
            q->normalize = OPTVQ_NORMALIZE_NULL;
        else if (r->status == OPTVQ_OK)
            r->status = optvq_fail(OPTVQ_ERR_FORMAT, "%s: quantize.normalize_mode '%s' is not all, dim or null",
                                   r->what, mode);
        /* use_prob (sampling) is read but the assignment is always the argmax:
         * every shipped config sets use_prob false. */
        (void)get_bool(r, p, "use_prob", 1);
    }
    if (r->status == OPTVQ_OK && (q->e_dim % q->num_head))
        r->status = optvq_fail(OPTVQ_ERR_FORMAT, "%s: quantize.num_head %lld does not divide e_dim %lld", r->what,
                               (long long)q->num_head, (long long)q->e_dim);
    if (r->status == OPTVQ_OK && !(q->epsilon > 0 && isfinite(q->epsilon)))
        r->status = optvq_fail(OPTVQ_ERR_FORMAT, "%s: quantize.epsilon must be a finite number > 0", r->what);
    if (r->status == OPTVQ_OK && !isfinite(q->beta))
        r->status = optvq_fail(OPTVQ_ERR_FORMAT, "%s: quantize.beta must be a finite number", r->what);
}

static int quantizer_kind(reader *r, const char *target)
{
    const char *cls = class_name(target);
    if (!strcmp(cls, "VectorQuantizerSinkhorn"))
        return 1;
    if (!strcmp(cls, "VectorQuantizer"))
        return 0;
    if (r->status == OPTVQ_OK)
        r->status = optvq_fail(OPTVQ_ERR_FORMAT, "%s: unknown quantize target '%s'", r->what, target);
    return -1;
}

/* Training settings, with the reference's values as defaults. */
static void read_train(reader *r, const cJSON *root, model_config *m)
{
    train_settings *t = &m->train;
    const cJSON *tr = cJSON_GetObjectItemCaseSensitive(root, "train");
    const cJSON *data = cJSON_GetObjectItemCaseSensitive(root, "data");
    r->section = "train";
    t->epochs = get_int(r, tr, "epochs", 100, 0, 1 << 20);
    t->seed = get_int(r, tr, "seed", 42, 0, INT64_MAX >> 1);
    t->learning_rate = get_num(r, tr, "learning_rate", 4.5e-6);
    t->mul_learning_rate = get_num(r, tr, "mul_learning_rate", 1.0);
    t->weight_decay = get_num(r, tr, "weight_decay", 0.05);
    const char *enter = get_str(r, tr, "enterpoint", ""), *codes = get_str(r, tr, "code_path", "");
    if (strlen(enter) >= sizeof t->enterpoint || strlen(codes) >= sizeof t->code_path) {
        if (r->status == OPTVQ_OK)
            r->status = optvq_fail(OPTVQ_ERR_FORMAT, "%s: train.enterpoint or train.code_path is too long", r->what);
    } else {
        snprintf(t->enterpoint, sizeof t->enterpoint, "%s", enter);
        snprintf(t->code_path, sizeof t->code_path, "%s", codes);
    }
    const char *init = get_str(r, tr, "use_initiate", "");
    /* The reference's vqbase configs say random_select, which its generate_codes
     * does not know: their codebook keeps the random init, as with null. */
    if (!strcmp(init, "random_select"))
        init = "";
    snprintf(t->use_initiate, sizeof t->use_initiate, "%s", init);
    if (r->status == OPTVQ_OK && init[0] && strcmp(init, "kmeans") && strcmp(init, "random"))
        r->status = optvq_fail(OPTVQ_ERR_FORMAT,
                               "%s: train.use_initiate '%s' is not kmeans, random, random_select or null", r->what,
                               init);
    r->section = "data";
    t->batch_size = get_int(r, data, "batch_size", 1024, 1, 1 << 20);
    const char *ds = get_str(r, data, "dataset", NULL);
    const cJSON *dtrain = cJSON_GetObjectItemCaseSensitive(data, "train");
    if (!ds && cJSON_IsObject(dtrain)) {
        const char *target = get_str(r, dtrain, "target", "");
        const char *cls = class_name(target);
        /* only Fashion-MNIST is packaged (Debian); MNIST, CIFAR-10 and ImageNet need --data */
        ds = !strcmp(cls, "FashionMNIST") ? "fashion-mnist" : "";
    }
    snprintf(t->dataset, sizeof t->dataset, "%s", ds ? ds : "");
    t->resize = 32;
    const cJSON *tp = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(dtrain, "params"), "transform"), "params");
    if (tp)
        t->resize = get_int(r, tp, "resize", 32, 1, 1 << 16);
    /* AELoss weights: model.autoencoder.params.loss.params */
    const cJSON *node = cJSON_GetObjectItemCaseSensitive(root, "model");
    node = node ? cJSON_GetObjectItemCaseSensitive(node, "autoencoder") : cJSON_GetObjectItemCaseSensitive(root, "autoencoder");
    const cJSON *lp = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(node, "params"), "loss"), "params");
    if (!lp)
        lp = cJSON_GetObjectItemCaseSensitive(root, "loss"); /* config.json */
    r->section = "loss";
    const char *ltarget = get_str(r, cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(node, "params"),
                                                                      "loss"),
                                  "target", "");
    const char *lcls = class_name(ltarget);
    if (r->status == OPTVQ_OK && ltarget[0] && strcmp(lcls, "AELoss") && strcmp(lcls, "AELossWithDisc"))
        r->status = optvq_fail(OPTVQ_ERR_FORMAT, "%s: unknown loss target '%s' (AELoss or AELossWithDisc)", r->what,
                               ltarget);
    t->use_disc = !strcmp(lcls, "AELossWithDisc");
    t->loss_g = get_num(r, lp, "loss_g_weight", 1.0);
    t->loss_d = get_num(r, lp, "loss_d_weight", 1.0);
    t->disc_start = get_int(r, lp, "disc_start", 0, 0, INT64_MAX >> 1);
    t->disc_in_channels = get_int(r, lp, "disc_in_channels", 3, 1, 64);
    t->disc_num_layers = get_int(r, lp, "disc_num_layers", 3, 1, 8);
    t->disc_ndf = get_int(r, lp, "disc_ndf", 64, 1, 4096);
    const char *dl = get_str(r, lp, "disc_loss", "hinge");
    t->disc_vanilla = !strcmp(dl, "vanilla");
    if (r->status == OPTVQ_OK && strcmp(dl, "hinge") && strcmp(dl, "vanilla"))
        r->status = optvq_fail(OPTVQ_ERR_FORMAT, "%s: loss.disc_loss '%s' is not hinge or vanilla", r->what, dl);
    if (r->status == OPTVQ_OK && (get_bool(r, lp, "use_actnorm", 0) || get_bool(r, lp, "disc_conditional", 0)))
        r->status = optvq_fail(OPTVQ_ERR_FORMAT, "%s: loss.use_actnorm and loss.disc_conditional are not supported "
                                                 "(no shipped config uses them)", r->what);
    t->loss_l1 = get_num(r, lp, "loss_l1_weight", 1.0);
    t->loss_l2 = get_num(r, lp, "loss_l2_weight", 1.0);
    t->loss_q = get_num(r, lp, "loss_q_weight", 1.0);
    t->loss_p = get_num(r, lp, "loss_p_weight", 0.0);
}

static void validate(reader *r, model_config *m)
{
    if (r->status != OPTVQ_OK)
        return;
    int64_t enc_dim = coder_hidden_dim(&m->encoder, 1), dec_dim = coder_hidden_dim(&m->decoder, 0);
    if (!m->use_connector && (enc_dim != m->quantize.e_dim || dec_dim != m->quantize.e_dim))
        r->status = optvq_fail(OPTVQ_ERR_FORMAT,
                               "%s: without use_connector the encoder (%lld) and decoder (%lld) channels must equal "
                               "e_dim (%lld)",
                               r->what, (long long)enc_dim, (long long)dec_dim, (long long)m->quantize.e_dim);
}

optvq_status model_config_parse(const char *text, size_t len, const char *what, model_config *out)
{
    memset(out, 0, sizeof *out);
    optvq_clear_error();
    size_t i = 0;
    while (i < len && (text[i] == ' ' || text[i] == '\n' || text[i] == '\r' || text[i] == '\t'))
        i++;
    cJSON *root;
    if (i < len && text[i] == '{') {
        root = cJSON_ParseWithLength(text, len);
        if (!root)
            return optvq_fail(OPTVQ_ERR_FORMAT, "%s: invalid JSON near byte %ld", what,
                              cJSON_GetErrorPtr() ? (long)(cJSON_GetErrorPtr() - text) : -1L);
    } else {
        root = parse_yaml(text, len, what);
        if (!root)
            return optvq_last_error()[0] ? OPTVQ_ERR_FORMAT : optvq_fail(OPTVQ_ERR_FORMAT, "%s: bad config", what);
    }
    reader r = {what, "", OPTVQ_OK};
    const cJSON *node = root;
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(node, "model");
    if (cJSON_IsObject(model))
        node = model;
    const cJSON *ae = cJSON_GetObjectItemCaseSensitive(node, "autoencoder");
    if (cJSON_IsObject(ae))
        node = ae;
    const char *target = get_str(&r, node, "target", NULL);
    if (target) {
        /* reference YAML: target/params */
        if (strcmp(class_name(target), "VQModel") != 0) {
            r.status = optvq_fail(OPTVQ_ERR_FORMAT, "%s: unknown autoencoder target '%s'", what, target);
        } else {
            const cJSON *params = cJSON_GetObjectItemCaseSensitive(node, "params");
            read_coder(&r, cJSON_GetObjectItemCaseSensitive(params, "encoder"), &out->encoder, 1);
            read_coder(&r, cJSON_GetObjectItemCaseSensitive(params, "decoder"), &out->decoder, 0);
            const cJSON *qs = cJSON_GetObjectItemCaseSensitive(params, "quantize");
            const char *qt = cJSON_IsObject(qs) ? get_str(&r, qs, "target", NULL) : NULL;
            if (!qt && r.status == OPTVQ_OK)
                r.status = optvq_fail(OPTVQ_ERR_FORMAT, "%s: no quantize target", what);
            int kind = qt ? quantizer_kind(&r, qt) : -1;
            if (kind >= 0)
                read_quantizer(&r, cJSON_GetObjectItemCaseSensitive(qs, "params"), kind, &out->quantize);
            r.section = "autoencoder";
            out->use_connector = get_bool(&r, params, "use_connector", 1);
        }
    } else if (cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(node, "encoder")) &&
               cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(node, "quantize"))) {
        /* Hugging Face VQModelHF: taming Encoder/Decoder, quantize_type */
        read_taming(&r, cJSON_GetObjectItemCaseSensitive(node, "encoder"), &out->encoder, 1);
        read_taming(&r, cJSON_GetObjectItemCaseSensitive(node, "decoder"), &out->decoder, 0);
        r.section = "config";
        const char *qt = get_str(&r, node, "quantize_type", "optvq");
        int kind = !strcmp(qt, "optvq") ? 1 : !strcmp(qt, "basevq") ? 0 : -1;
        if (kind < 0 && r.status == OPTVQ_OK)
            r.status = optvq_fail(OPTVQ_ERR_FORMAT, "%s: unknown quantize_type '%s' (optvq or basevq)", what, qt);
        if (kind >= 0)
            read_quantizer(&r, cJSON_GetObjectItemCaseSensitive(node, "quantize"), kind, &out->quantize);
        r.section = "config";
        out->use_connector = get_bool(&r, node, "use_connector", 1);
    } else {
        r.status = optvq_fail(OPTVQ_ERR_FORMAT,
                              "%s: neither a model.autoencoder section (YAML) nor encoder/decoder/quantize (config.json)",
                              what);
    }
    validate(&r, out);
    read_train(&r, root, out);
    cJSON_Delete(root);
    return r.status;
}

optvq_status model_config_load(const char *path, model_config *out)
{
    struct stat path_st; /* fopen() opens a folder; only reading it would fail */
    if (stat(path, &path_st) == 0 && S_ISDIR(path_st.st_mode))
        return optvq_fail(OPTVQ_ERR_IO, "%s: is a folder, not a config file", path);
    FILE *f = fopen(path, "rb");
    if (!f)
        return optvq_fail(OPTVQ_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    /* the buffer grows with the text (from 64 KiB) up to the cap, plus one byte to see overflow */
    char *buf = NULL;
    size_t n = 0, cap = 0;
    int err = 0;
    while (n == cap && cap < (size_t)MAX_CONFIG_BYTES + 1) {
        cap = cap ? (2 * cap < (size_t)MAX_CONFIG_BYTES + 1 ? 2 * cap : (size_t)MAX_CONFIG_BYTES + 1) : 65536;
        char *nb = realloc(buf, cap + 1);
        if (!nb) {
            free(buf);
            fclose(f);
            return optvq_fail(OPTVQ_ERR_NOMEM, "%s: out of memory", path);
        }
        buf = nb;
        n += fread(buf + n, 1, cap - n, f);
        if ((err = ferror(f)) != 0)
            break;
    }
    fclose(f);
    if (err || n > MAX_CONFIG_BYTES) {
        free(buf);
        return optvq_fail(OPTVQ_ERR_FORMAT, "%s: %s", path, err ? "read error" : "larger than 16 MiB");
    }
    buf[n] = '\0';
    if (memchr(buf, '\0', n)) {
        free(buf);
        return optvq_fail(OPTVQ_ERR_FORMAT, "%s: not a text config (NUL byte)", path);
    }
    optvq_status st = model_config_parse(buf, n, path, out);
    free(buf);
    return st;
}

int64_t coder_hidden_dim(const coder_config *c, int is_encoder)
{
    if (c->arch == ARCH_PLAIN_CNN)
        return 32;
    return is_encoder ? (c->double_z ? 2 * c->z_channels : c->z_channels) : c->z_channels;
}

int64_t coder_downsample(const coder_config *c)
{
    return c->arch == ARCH_PLAIN_CNN ? 4 : (int64_t)1 << (c->n_levels - 1);
}

static cJSON *taming_json(const coder_config *c, int is_encoder)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddBoolToObject(o, "double_z", is_encoder ? c->double_z : 0);
    cJSON_AddNumberToObject(o, "z_channels", (double)c->z_channels);
    cJSON_AddNumberToObject(o, "resolution", (double)c->resolution);
    cJSON_AddNumberToObject(o, "in_channels", (double)(is_encoder ? c->in_channels : 3));
    cJSON_AddNumberToObject(o, "out_ch", (double)(is_encoder ? 3 : c->out_channels));
    cJSON_AddNumberToObject(o, "ch", (double)c->ch);
    cJSON *m = cJSON_AddArrayToObject(o, "ch_mult");
    for (int i = 0; i < c->n_levels; i++)
        cJSON_AddItemToArray(m, cJSON_CreateNumber((double)c->ch_mult[i]));
    cJSON_AddNumberToObject(o, "num_res_blocks", (double)c->num_res_blocks);
    cJSON *a = cJSON_AddArrayToObject(o, "attn_resolutions");
    for (int i = 0; i < c->n_attn; i++)
        cJSON_AddItemToArray(a, cJSON_CreateNumber((double)c->attn_resolutions[i]));
    cJSON_AddNumberToObject(o, "dropout", 0.0);
    return o;
}

optvq_status model_config_save_json(const model_config *c, const char *path)
{
    cJSON *root = cJSON_CreateObject();
    if (c->encoder.arch == ARCH_TAMING && c->decoder.arch == ARCH_TAMING) {
        cJSON_AddItemToObject(root, "encoder", taming_json(&c->encoder, 1));
        cJSON_AddItemToObject(root, "decoder", taming_json(&c->decoder, 0));
    } else {
        /* plain CNN (either side): keep the reference's target/params form under model.autoencoder */
        cJSON *model = cJSON_AddObjectToObject(root, "model");
        cJSON *ae = cJSON_AddObjectToObject(model, "autoencoder");
        cJSON_AddStringToObject(ae, "target", "optvq.models.vqgan.VQModel");
        cJSON *params = cJSON_AddObjectToObject(ae, "params");
        cJSON_AddBoolToObject(params, "use_connector", c->use_connector);
        cJSON *enc = cJSON_AddObjectToObject(params, "encoder");
        if (c->encoder.arch == ARCH_TAMING) {
            cJSON_AddStringToObject(enc, "target", "optvq.models.backbone.diffusion.Encoder");
            cJSON_AddItemToObject(enc, "params", taming_json(&c->encoder, 1));
        } else {
            cJSON_AddStringToObject(enc, "target", "optvq.models.backbone.simple_cnn.PlainCNNEncoder");
            cJSON_AddNumberToObject(cJSON_AddObjectToObject(enc, "params"), "in_dim", (double)c->encoder.in_channels);
        }
        cJSON *dec = cJSON_AddObjectToObject(params, "decoder");
        if (c->decoder.arch == ARCH_TAMING) {
            cJSON_AddStringToObject(dec, "target", "optvq.models.backbone.diffusion.Decoder");
            cJSON_AddItemToObject(dec, "params", taming_json(&c->decoder, 0));
        } else {
            cJSON_AddStringToObject(dec, "target", "optvq.models.backbone.simple_cnn.PlainCNNDecoder");
            cJSON_AddNumberToObject(cJSON_AddObjectToObject(dec, "params"), "out_dim", (double)c->decoder.out_channels);
        }
        cJSON *qs = cJSON_AddObjectToObject(params, "quantize");
        cJSON_AddStringToObject(qs, "target", c->quantize.assign == OPTVQ_ASSIGN_SINKHORN
                                                  ? "optvq.models.quantizer.VectorQuantizerSinkhorn"
                                                  : "optvq.models.quantizer.VectorQuantizer");
        cJSON_AddItemToObject(qs, "params", cJSON_CreateObject());
    }
    /* quantizer parameters, in both layouts */
    cJSON *q = cJSON_GetObjectItemCaseSensitive(root, "model")
                   ? cJSON_GetObjectItemCaseSensitive(
                         cJSON_GetObjectItemCaseSensitive(
                             cJSON_GetObjectItemCaseSensitive(
                                 cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(root, "model"),
                                                                  "autoencoder"),
                                 "params"),
                             "quantize"),
                         "params")
                   : cJSON_AddObjectToObject(root, "quantize");
    const optvq_quantizer_config *qc = &c->quantize;
    static const char *const losses[] = {"l2", "l1", "ce"}, *const modes[] = {"all", "dim", "null"};
    cJSON_AddNumberToObject(q, "n_e", (double)qc->n_e);
    cJSON_AddNumberToObject(q, "e_dim", (double)qc->e_dim);
    cJSON_AddNumberToObject(q, "beta", (double)qc->beta);
    cJSON_AddBoolToObject(q, "use_proj", qc->use_proj);
    cJSON_AddNumberToObject(q, "num_head", (double)qc->num_head);
    cJSON_AddStringToObject(q, "loss_q_type", losses[qc->loss]);
    if (qc->assign == OPTVQ_ASSIGN_SINKHORN) {
        cJSON_AddNumberToObject(q, "epsilon", (double)qc->epsilon);
        cJSON_AddNumberToObject(q, "n_iters", qc->n_iters);
        cJSON_AddStringToObject(q, "normalize_mode", modes[qc->normalize]);
        cJSON_AddBoolToObject(q, "use_prob", 0);
    }
    if (!cJSON_GetObjectItemCaseSensitive(root, "model")) {
        cJSON_AddStringToObject(root, "quantize_type", qc->assign == OPTVQ_ASSIGN_SINKHORN ? "optvq" : "basevq");
        cJSON_AddBoolToObject(root, "use_connector", c->use_connector);
    }
    char *text = cJSON_Print(root);
    cJSON_Delete(root);
    if (!text)
        return optvq_fail(OPTVQ_ERR_NOMEM, "%s: out of memory", path);
    optvq_status st = optvq_atomic_write_text(path, text);
    free(text);
    return st;
}
