#include "viz/gif.h"

#include "core/atomic_file.h"
#include "core/error.h"

#include <gif_lib.h>
#include <stdlib.h>
#include <string.h>

void viz_palette_build(uint8_t rgb[768], const uint8_t (*accents)[3], int n_accents)
{
    enum { TINTS = 12 };
    if (n_accents < 0)
        n_accents = 0;
    if (n_accents > 3)
        n_accents = 3;
    int k = 0;
    for (int r = 0; r < 6; r++)
        for (int g = 0; g < 6; g++)
            for (int b = 0; b < 6; b++, k++) {
                rgb[3 * k + 0] = (uint8_t)(51 * r);
                rgb[3 * k + 1] = (uint8_t)(51 * g);
                rgb[3 * k + 2] = (uint8_t)(51 * b);
            }
    /* tints: white blended with the accent, t = 1/13 .. 12/13 */
    for (int a = 0; a < n_accents; a++)
        for (int i = 1; i <= TINTS; i++, k++)
            for (int c = 0; c < 3; c++)
                rgb[3 * k + c] = (uint8_t)((255 * (TINTS + 1 - i) + accents[a][c] * i +
                                            (TINTS + 1) / 2) / (TINTS + 1));
    /* greys fill the rest, up to (not including) VIZ_GIF_KEEP */
    const int greys = VIZ_GIF_KEEP - k;
    for (int i = 0; i < greys; i++, k++)
        rgb[3 * k + 0] = rgb[3 * k + 1] = rgb[3 * k + 2] = (uint8_t)((i + 1) * 255 / (greys + 1));
    /* the reserved entry: never chosen, shown nowhere */
    rgb[3 * VIZ_GIF_KEEP + 0] = 255;
    rgb[3 * VIZ_GIF_KEEP + 1] = 0;
    rgb[3 * VIZ_GIF_KEEP + 2] = 255;
}

void viz_palette_map_init(viz_palette_map *map, const uint8_t rgb[768])
{
    memcpy(map->rgb, rgb, sizeof map->rgb);
    for (int r = 0; r < 32; r++)
        for (int g = 0; g < 32; g++)
            for (int b = 0; b < 32; b++) {
                /* centre of the 8x8x8 cell */
                int cr = r * 8 + 4, cg = g * 8 + 4, cb = b * 8 + 4;
                int best = 0, best_d = 1 << 30;
                for (int k = 0; k < VIZ_GIF_KEEP; k++) {
                    int dr = cr - rgb[3 * k], dg = cg - rgb[3 * k + 1], db = cb - rgb[3 * k + 2];
                    /* a little weight on green, as the eye has */
                    int d = 2 * dr * dr + 4 * dg * dg + 3 * db * db;
                    if (d < best_d) {
                        best_d = d;
                        best = k;
                    }
                }
                map->lut[(r << 10) | (g << 5) | b] = (uint8_t)best;
            }
}

void viz_palette_map_argb(const viz_palette_map *map, const uint8_t *argb, int stride, int width,
                          int height, uint8_t *indices)
{
    for (int y = 0; y < height; y++) {
        const uint32_t *row = (const uint32_t *)(const void *)(argb + (size_t)y * (size_t)stride);
        uint8_t *out = indices + (size_t)y * (size_t)width;
        for (int x = 0; x < width; x++) {
            uint32_t p = row[x];
            uint32_t r = (p >> 16) & 0xff, g = (p >> 8) & 0xff, b = p & 0xff;
            out[x] = map->lut[((r >> 3) << 10) | ((g >> 3) << 5) | (b >> 3)];
        }
    }
}

struct viz_gif {
    optvq_atomic_file file;
    GifFileType *gif;
    int width, height;
    int64_t frames;
    uint8_t *prev; /* the picture shown so far */
    uint8_t *rect; /* the rectangle being written */
};

static int write_cb(GifFileType *gif, const GifByteType *bytes, int len)
{
    viz_gif *g = gif->UserData;
    return (int)fwrite(bytes, 1, (size_t)len, g->file.fp);
}

static optvq_status gif_fail(viz_gif *g, int code, const char *what)
{
    const char *msg = GifErrorString(code);
    optvq_status st = optvq_fail(OPTVQ_ERR_IO, "%s: %s: %s", g->file.final_path, what,
                                 msg ? msg : "giflib error");
    viz_gif_abort(g);
    return st;
}

optvq_status viz_gif_open(const char *path, int width, int height, const uint8_t palette[768],
                          viz_gif **out)
{
    *out = NULL;
    if (width <= 0 || height <= 0 || width > 65535 || height > 65535 ||
        (int64_t)width * height > (1 << 28))
        return optvq_fail(OPTVQ_ERR_INVALID_ARG, "%s: bad GIF size %dx%d", path, width, height);
    viz_gif *g = calloc(1, sizeof *g);
    if (!g)
        return optvq_fail(OPTVQ_ERR_NOMEM, "out of memory");
    optvq_status st = optvq_atomic_open(&g->file, path);
    if (st != OPTVQ_OK) {
        free(g);
        return st;
    }
    g->width = width;
    g->height = height;
    g->prev = malloc((size_t)width * (size_t)height);
    g->rect = malloc((size_t)width * (size_t)height);
    if (!g->prev || !g->rect) {
        optvq_atomic_abort(&g->file);
        free(g->prev);
        free(g->rect);
        free(g);
        return optvq_fail(OPTVQ_ERR_NOMEM, "out of memory");
    }
    int err = 0;
    g->gif = EGifOpen(g, write_cb, &err);
    if (!g->gif)
        return gif_fail(g, err, "cannot start GIF");
    EGifSetGifVersion(g->gif, true);

    GifColorType colors[256];
    for (int k = 0; k < 256; k++) {
        colors[k].Red = palette[3 * k];
        colors[k].Green = palette[3 * k + 1];
        colors[k].Blue = palette[3 * k + 2];
    }
    ColorMapObject *cmap = GifMakeMapObject(256, colors);
    if (!cmap)
        return gif_fail(g, E_GIF_ERR_NOT_ENOUGH_MEM, "colour map");
    int rc = EGifPutScreenDesc(g->gif, width, height, 8, 0, cmap);
    GifFreeMapObject(cmap);
    if (rc != GIF_OK)
        return gif_fail(g, g->gif->Error, "screen descriptor");

    /* NETSCAPE2.0 application extension: loop forever */
    static const GifByteType app[11] = {'N', 'E', 'T', 'S', 'C', 'A', 'P', 'E', '2', '.', '0'};
    static const GifByteType loop[3] = {1, 0, 0};
    if (EGifPutExtensionLeader(g->gif, APPLICATION_EXT_FUNC_CODE) != GIF_OK ||
        EGifPutExtensionBlock(g->gif, 11, app) != GIF_OK ||
        EGifPutExtensionBlock(g->gif, 3, loop) != GIF_OK ||
        EGifPutExtensionTrailer(g->gif) != GIF_OK)
        return gif_fail(g, g->gif->Error, "loop extension");
    *out = g;
    return OPTVQ_OK;
}

optvq_status viz_gif_add_frame(viz_gif *g, const uint8_t *indices, int delay_cs)
{
    const int w = g->width, h = g->height;
    /* the rectangle that changed since the previous frame */
    int x0 = 0, y0 = 0, x1 = w - 1, y1 = h - 1, keep = 0;
    if (g->frames > 0) {
        x0 = w;
        y0 = h;
        x1 = y1 = -1;
        for (int y = 0; y < h; y++) {
            const uint8_t *a = indices + (size_t)y * (size_t)w;
            const uint8_t *b = g->prev + (size_t)y * (size_t)w;
            if (!memcmp(a, b, (size_t)w))
                continue;
            if (y0 > y)
                y0 = y;
            y1 = y;
            int l = 0, r = w - 1;
            while (a[l] == b[l])
                l++;
            while (a[r] == b[r])
                r--;
            if (x0 > l)
                x0 = l;
            if (x1 < r)
                x1 = r;
        }
        if (y1 < 0) /* nothing changed: one kept pixel carries the delay */
            x0 = y0 = x1 = y1 = 0;
        keep = 1;
        for (int y = y0; y <= y1 && keep; y++)
            for (int x = x0; x <= x1; x++)
                if (indices[(size_t)y * (size_t)w + (size_t)x] == VIZ_GIF_KEEP) {
                    keep = 0;
                    break;
                }
    }
    const int rw = x1 - x0 + 1, rh = y1 - y0 + 1;
    for (int y = 0; y < rh; y++) {
        const size_t off = (size_t)(y0 + y) * (size_t)w + (size_t)x0;
        uint8_t *dst = g->rect + (size_t)y * (size_t)rw;
        for (int x = 0; x < rw; x++)
            dst[x] = keep && indices[off + (size_t)x] == g->prev[off + (size_t)x]
                         ? VIZ_GIF_KEEP
                         : indices[off + (size_t)x];
    }

    GraphicsControlBlock gcb = {
        .DisposalMode = DISPOSE_DO_NOT,
        .UserInputFlag = false,
        .DelayTime = delay_cs < 0 ? 0 : delay_cs > 65535 ? 65535 : delay_cs,
        .TransparentColor = keep ? VIZ_GIF_KEEP : NO_TRANSPARENT_COLOR,
    };
    GifByteType ext[4];
    EGifGCBToExtension(&gcb, ext);
    if (EGifPutExtension(g->gif, GRAPHICS_EXT_FUNC_CODE, 4, ext) != GIF_OK)
        return optvq_fail(OPTVQ_ERR_IO, "%s: frame control: %s", g->file.final_path,
                          GifErrorString(g->gif->Error));
    if (EGifPutImageDesc(g->gif, x0, y0, rw, rh, false, NULL) != GIF_OK)
        return optvq_fail(OPTVQ_ERR_IO, "%s: image descriptor: %s", g->file.final_path,
                          GifErrorString(g->gif->Error));
    /* one call for the whole rectangle (giflib masks the pixels in place) */
    if (EGifPutLine(g->gif, g->rect, rw * rh) != GIF_OK)
        return optvq_fail(OPTVQ_ERR_IO, "%s: image data: %s", g->file.final_path,
                          GifErrorString(g->gif->Error));
    memcpy(g->prev, indices, (size_t)w * (size_t)h);
    g->frames++;
    return OPTVQ_OK;
}

optvq_status viz_gif_close(viz_gif *g)
{
    int err = 0;
    int rc = EGifCloseFile(g->gif, &err); /* frees g->gif; our FILE stays open */
    g->gif = NULL;
    if (rc != GIF_OK) {
        optvq_status st = optvq_fail(OPTVQ_ERR_IO, "%s: cannot finish GIF: %s",
                                     g->file.final_path, GifErrorString(err));
        viz_gif_abort(g);
        return st;
    }
    optvq_status st = optvq_atomic_commit(&g->file);
    free(g->prev);
    free(g->rect);
    free(g);
    return st;
}

void viz_gif_abort(viz_gif *g)
{
    if (!g)
        return;
    if (g->gif) {
        int err;
        EGifCloseFile(g->gif, &err);
        g->gif = NULL;
    }
    optvq_atomic_abort(&g->file);
    free(g->prev);
    free(g->rect);
    free(g);
}
