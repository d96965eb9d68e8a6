/* The JSON API of 'optvq serve', apart from HTTP: each call takes the
 * request's bytes and returns an HTTP status with a JSON body (an object
 * with "error" and a one-line message for a 4xx/5xx). Runs on the server's
 * one worker thread, so a model is never used by two requests at once. */
#ifndef OPTVQ_SERVE_API_H
#define OPTVQ_SERVE_API_H

#include "cli/perceptual.h"
#include "optvq/optvq.h"

#include <stddef.h>
#include <stdint.h>

#define SERVE_NAME_MAX 64

typedef struct served_model {
    char name[SERVE_NAME_MAX]; /* unique; what the form's `model` field names */
    char *dir;
    optvq_model *model;
    optvq_model_info info;
    optvq_quantizer_config defaults; /* the config's quantizer settings */
    char *eval_json;                 /* DIR/eval.json when present (NULL otherwise) */
} served_model;

typedef struct serve_api {
    served_model *models;
    int n_models;
    int64_t max_pixels; /* largest accepted upload, width x height */
    cli_perceptual *lpips; /* NULL: no LPIPS */
} serve_api;

typedef struct serve_reply {
    int status; /* HTTP status */
    char *json; /* malloc'd, NUL-terminated */
} serve_reply;

/* GET /api/models */
serve_reply serve_api_models(const serve_api *api);
/* POST /api/reconstruct: a multipart/form-data body. */
serve_reply serve_api_reconstruct(const serve_api *api, const char *content_type, const uint8_t *body, size_t len);
/* POST /api/toy: a JSON object body. */
serve_reply serve_api_toy(const uint8_t *body, size_t len);
/* {"error": message} with the given status (message printf-style). */
serve_reply serve_api_error(int status, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* Limits of the toy endpoint. */
#define SERVE_TOY_MAX_POINTS 2000
#define SERVE_TOY_MAX_CODES 512
#define SERVE_TOY_MAX_STEPS 5000
#define SERVE_TOY_MAX_FRAMES 200

#endif
