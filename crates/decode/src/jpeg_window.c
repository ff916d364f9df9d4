/* Decoding only the window of a JPEG that the centre crop's resize reads
 * (at full size or scaled in the DCT domain), into an image-sized buffer at
 * the window's own place, with libjpeg(-turbo)'s partial decompression:
 * jpeg_crop_scanline (only the iMCU columns the window needs go through the
 * IDCT, upsampling and colour conversion) and jpeg_skip_scanlines (the rows
 * above and below it are entropy-decoded only).
 *
 * The whole stream is still read, to its end marker, so that libjpeg sees
 * every problem a full decode would. Any warning or error ends the decode
 * (setjmp/longjmp) and the caller decodes the image in full instead, where
 * warnings are told apart and reported as before: this path only ever
 * returns images that decoded without a word from libjpeg. */

#include <setjmp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>

#include <jpeglib.h>

/* Results of window_decode. */
#define WINDOW_OK 0
#define WINDOW_DECLINED 1

struct window_error {
  struct jpeg_error_mgr pub;
  jmp_buf jump;
};

struct window_decoder {
  struct jpeg_decompress_struct cinfo;
  struct window_error err;
};

static void window_error_exit(j_common_ptr cinfo) {
  struct window_error *err = (struct window_error *)cinfo->err;
  longjmp(err->jump, 1);
}

/* A warning (level -1) ends the decode as an error does; trace messages
 * (level >= 0) are ignored. */
static void window_emit_message(j_common_ptr cinfo, int level) {
  if (level < 0) window_error_exit(cinfo);
}

struct window_decoder *window_decoder_new(void) {
  struct window_decoder *volatile d = calloc(1, sizeof *d);
  if (!d) return NULL;
  d->cinfo.err = jpeg_std_error(&d->err.pub);
  d->err.pub.error_exit = window_error_exit;
  d->err.pub.emit_message = window_emit_message;
  if (setjmp(d->err.jump)) {
    free(d);
    return NULL;
  }
  jpeg_create_decompress(&d->cinfo);
  return d;
}

void window_decoder_free(struct window_decoder *d) {
  if (!d) return;
  jpeg_destroy_decompress(&d->cinfo);
  free(d);
}

/* Decodes a want_w x want_h JPEG scaled by 1/denom in the DCT domain
 * (1, 2, 4 or 8: an image of ceil(want_w/denom) x ceil(want_h/denom), out_w
 * x out_h), rows y .. y+h and at least columns x .. x+w of that image, as
 * RGB into `out` (out_w * out_h * 3 bytes, rows out_w * 3 apart), each
 * pixel at its place in the whole image; bytes outside the decoded
 * columns and rows are left as they were. The columns are widened by one
 * pixel on each side where the image has one, then snapped outwards to the
 * iMCU grid: the smooth chroma upsampling treats a partial row's first and
 * last pixels as image edges, so the window's own pixels must not lie there
 * (they then equal a full decode's).
 *
 * Returns WINDOW_OK, or WINDOW_DECLINED: the stream is not a want_w x
 * want_h image in a colour space that converts to RGB, denom is not one of
 * the four, the window does not fit, or libjpeg warned or failed anywhere
 * in the stream. */
int window_decode(struct window_decoder *d, const unsigned char *data,
                  size_t len, unsigned want_w, unsigned want_h, unsigned denom,
                  unsigned x, unsigned y, unsigned w, unsigned h,
                  unsigned char *out, size_t out_len) {
  struct jpeg_decompress_struct *cinfo = &d->cinfo;
  if (setjmp(d->err.jump)) {
    jpeg_abort_decompress(cinfo);
    return WINDOW_DECLINED;
  }
  jpeg_mem_src(cinfo, data, (unsigned long)len);
  jpeg_read_header(cinfo, TRUE);
  if (cinfo->image_width != want_w || cinfo->image_height != want_h ||
      (cinfo->jpeg_color_space != JCS_YCbCr &&
       cinfo->jpeg_color_space != JCS_GRAYSCALE &&
       cinfo->jpeg_color_space != JCS_RGB) ||
      (denom != 1 && denom != 2 && denom != 4 && denom != 8)) {
    jpeg_abort_decompress(cinfo);
    return WINDOW_DECLINED;
  }
  cinfo->out_color_space = JCS_RGB;
  cinfo->dct_method = JDCT_ISLOW;
  cinfo->do_fancy_upsampling = TRUE;
  cinfo->scale_num = 1;
  cinfo->scale_denom = denom;
  jpeg_calc_output_dimensions(cinfo);
  JDIMENSION out_w = cinfo->output_width, out_h = cinfo->output_height;
  if (x + w > out_w || y + h > out_h || w == 0 || h == 0 ||
      out_len < (size_t)out_h * out_w * 3) {
    jpeg_abort_decompress(cinfo);
    return WINDOW_DECLINED;
  }
  jpeg_start_decompress(cinfo);

  JDIMENSION left = x > 0 ? x - 1 : 0;
  JDIMENSION right = x + w < out_w ? x + w + 1 : out_w;
  JDIMENSION cols = right - left;
  if (left > 0 || right < out_w) jpeg_crop_scanline(cinfo, &left, &cols);

  size_t stride = (size_t)out_w * 3;
  unsigned char *base = out + (size_t)left * 3;
  if (y > 0) jpeg_skip_scanlines(cinfo, y);
  JSAMPROW rows[16];
  while (cinfo->output_scanline < y + h) {
    JDIMENSION at = cinfo->output_scanline;
    JDIMENSION n = y + h - at;
    if (n > 16) n = 16;
    for (JDIMENSION i = 0; i < n; i++) rows[i] = base + (size_t)(at + i) * stride;
    jpeg_read_scanlines(cinfo, rows, n);
  }
  if (y + h < out_h) jpeg_skip_scanlines(cinfo, out_h - (y + h));
  jpeg_finish_decompress(cinfo);
  return WINDOW_OK;
}
