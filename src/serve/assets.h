/* The page of 'optvq serve' (src/serve/web/), compiled into the binary by
 * scripts/embed-assets.sh at build time: the server looks paths up in this
 * table only, so no request ever reaches the file system. */
#ifndef OPTVQ_SERVE_ASSETS_H
#define OPTVQ_SERVE_ASSETS_H

#include <stddef.h>

typedef struct serve_asset {
    const char *path; /* "/index.html", "/examples/0.png", ... */
    const char *type; /* its Content-Type */
    const unsigned char *data;
    size_t len;
} serve_asset;

extern const serve_asset serve_assets[];
extern const size_t serve_assets_count;

#endif
