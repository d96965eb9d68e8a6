/* Writing model outputs as images: PNG or JPEG chosen by the file name.
 * JPEG goes through libjpeg into an atomic file (temporary name, fsync,
 * rename); libjpeg's errors come back through a longjmp, never exit(). */
#include "core/atomic_file.h"
#include "core/error.h"
#include "io/image.h"

#include <jpeglib.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

typedef struct jpeg_fail {
    struct jpeg_error_mgr base;
    jmp_buf jump;
    char msg[JMSG_LENGTH_MAX];
} jpeg_fail;

static void jpeg_error_exit_cb(j_common_ptr cinfo)
{
    jpeg_fail *f = (jpeg_fail *)cinfo->err;
    f->base.format_message(cinfo, f->msg);
    longjmp(f->jump, 1);
}

static void jpeg_quiet_cb(j_common_ptr cinfo, int level)
{
    (void)cinfo;
    (void)level;
}

static int ends_with_ci(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcasecmp(s + n - m, suffix) == 0;
}

int optvq_image_path_is_jpeg(const char *path)
{
    return path && (ends_with_ci(path, ".jpg") || ends_with_ci(path, ".jpeg"));
}

optvq_status optvq_image_write_jpeg_u8(const char *path, const optvq_image_u8 *img, int quality)
{
    if (!path || !img || !img->data || (img->channels != 1 && img->channels != 3) || img->width < 1 ||
        img->height < 1)
        return optvq_fail(OPTVQ_ERR_INVALID_ARG, "%s: bad image to write as JPEG", path ? path : "(null)");
    if (quality < 1 || quality > 100)
        return optvq_fail(OPTVQ_ERR_INVALID_ARG, "%s: JPEG quality %d is not in 1..100", path, quality);
    optvq_atomic_file file;
    OPTVQ_TRY(optvq_atomic_open(&file, path));
    struct jpeg_compress_struct cinfo;
    jpeg_fail fail;
    memset(&cinfo, 0, sizeof cinfo);
    cinfo.err = jpeg_std_error(&fail.base);
    fail.base.error_exit = jpeg_error_exit_cb;
    fail.base.emit_message = jpeg_quiet_cb;
    if (setjmp(fail.jump)) {
        jpeg_destroy_compress(&cinfo);
        optvq_atomic_abort(&file);
        return optvq_fail(OPTVQ_ERR_IO, "%s: JPEG encoder: %s", path, fail.msg);
    }
    jpeg_create_compress(&cinfo);
    jpeg_stdio_dest(&cinfo, file.fp);
    cinfo.image_width = (JDIMENSION)img->width;
    cinfo.image_height = (JDIMENSION)img->height;
    cinfo.input_components = img->channels;
    cinfo.in_color_space = img->channels == 3 ? JCS_RGB : JCS_GRAYSCALE;
    jpeg_set_defaults(&cinfo);
    jpeg_set_quality(&cinfo, quality, TRUE);
    if (img->channels == 3) { /* no chroma subsampling: reconstructions are compared pixel by pixel */
        for (int i = 0; i < 3; i++)
            cinfo.comp_info[i].h_samp_factor = cinfo.comp_info[i].v_samp_factor = 1;
    }
    jpeg_start_compress(&cinfo, TRUE);
    while (cinfo.next_scanline < cinfo.image_height) {
        JSAMPROW row = (JSAMPROW)(img->data + (size_t)cinfo.next_scanline * img->width * img->channels);
        jpeg_write_scanlines(&cinfo, &row, 1);
    }
    jpeg_finish_compress(&cinfo);
    jpeg_destroy_compress(&cinfo);
    return optvq_atomic_commit(&file);
}

optvq_status optvq_image_write_signed(const char *path, const float *chw, int channels, int height, int width)
{
    if (!optvq_image_path_is_jpeg(path))
        return optvq_image_write_png_signed(path, chw, channels, height, width);
    if (!chw || (channels != 1 && channels != 3) || height < 1 || width < 1)
        return optvq_fail(OPTVQ_ERR_INVALID_ARG, "%s: bad image to write", path);
    optvq_image_u8 img;
    OPTVQ_TRY(optvq_image_u8_alloc(&img, width, height, channels));
    optvq_status st = optvq_image_float_to_u8(chw, channels, height, width, 1, OPTVQ_IMAGE_ROUND, &img);
    if (st == OPTVQ_OK)
        st = optvq_image_write_jpeg_u8(path, &img, OPTVQ_IMAGE_JPEG_QUALITY);
    optvq_image_u8_free(&img);
    return st;
}
