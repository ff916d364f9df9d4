/* Decoding a region of a JPEG stream with libjpeg(-turbo)'s partial
 * decompression: jpeg_crop_scanline (only the iMCU columns the region
 * needs go through the IDCT, upsampling and colour conversion),
 * jpeg_skip_scanlines (rows above the region are entropy-decoded only), and
 * no work at all after the region's last row.
 *
 * Errors and warnings (a corrupt or truncated stream) end the decode through
 * setjmp/longjmp with libjpeg's message; the caller then drops the handle. */

#include <setjmp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>

/* Flags of region_decode. */
#define REGION_FAST_DCT 1
#define REGION_FAST_UPSAMPLING 2

/* Results of region_decode. */
#define REGION_OK 0
#define REGION_ERROR 1
#define REGION_SIZE 2

struct region_error {
  struct jpeg_error_mgr pub;
  jmp_buf jump;
  char message[JMSG_LENGTH_MAX];
};

struct region_decoder {
  struct jpeg_decompress_struct cinfo;
  struct region_error err;
};

static void region_error_exit(j_common_ptr cinfo) {
  struct region_error *err = (struct region_error *)cinfo->err;
  (*cinfo->err->format_message)(cinfo, err->message);
  longjmp(err->jump, 1);
}

/* A warning (level -1: corrupt data, premature end) ends the decode as an
 * error does, as TurboJPEG reports any warning as a failure; trace messages
 * (level >= 0) are ignored. */
static void region_emit_message(j_common_ptr cinfo, int level) {
  if (level < 0) region_error_exit(cinfo);
}

struct region_decoder *region_decoder_new(void) {
  struct region_decoder *volatile d = calloc(1, sizeof *d);
  if (!d) return NULL;
  d->cinfo.err = jpeg_std_error(&d->err.pub);
  d->err.pub.error_exit = region_error_exit;
  d->err.pub.emit_message = region_emit_message;
  if (setjmp(d->err.jump)) {
    free(d);
    return NULL;
  }
  jpeg_create_decompress(&d->cinfo);
  return d;
}

void region_decoder_free(struct region_decoder *d) {
  if (!d) return;
  jpeg_destroy_decompress(&d->cinfo);
  free(d);
}

const char *region_decoder_message(const struct region_decoder *d) {
  return d->err.message;
}

/* Decodes rows y .. y+h of the stream's image, columns at least x .. x+w,
 * as RGB into `out` (room for h rows of the image's full width), each row
 * out_cols*3 bytes long, the first holding column *out_x. The columns
 * decoded are the region widened by one pixel on each side where the image
 * has one, then snapped outwards to the iMCU grid: the smooth chroma
 * upsampling treats a partial row's first and last pixels as image edges,
 * so the region's own pixels must not lie there (they then equal a full
 * decode's).
 *
 * Returns REGION_OK, REGION_SIZE (the image is not want_w x want_h; its size
 * in *got_w, *got_h) or REGION_ERROR (message in region_decoder_message). */
int region_decode(struct region_decoder *d, const unsigned char *data,
                  size_t len, unsigned want_w, unsigned want_h, unsigned x,
                  unsigned y, unsigned w, unsigned h, int flags,
                  unsigned char *out, size_t out_len, unsigned *out_x,
                  unsigned *out_cols, unsigned *got_w, unsigned *got_h) {
  struct jpeg_decompress_struct *cinfo = &d->cinfo;
  d->err.message[0] = 0;
  if (setjmp(d->err.jump)) {
    jpeg_abort_decompress(cinfo);
    return REGION_ERROR;
  }
  jpeg_mem_src(cinfo, data, (unsigned long)len);
  jpeg_read_header(cinfo, TRUE);
  *got_w = cinfo->image_width;
  *got_h = cinfo->image_height;
  if (cinfo->image_width != want_w || cinfo->image_height != want_h) {
    jpeg_abort_decompress(cinfo);
    return REGION_SIZE;
  }
  if (x + w > want_w || y + h > want_h || w == 0 || h == 0 ||
      out_len < (size_t)h * want_w * 3) {
    snprintf(d->err.message, sizeof d->err.message,
             "region %ux%u at (%u, %u) does not fit a %ux%u image", w, h, x,
             y, want_w, want_h);
    jpeg_abort_decompress(cinfo);
    return REGION_ERROR;
  }
  cinfo->out_color_space = JCS_RGB;
  cinfo->dct_method = (flags & REGION_FAST_DCT) ? JDCT_IFAST : JDCT_ISLOW;
  cinfo->do_fancy_upsampling = (flags & REGION_FAST_UPSAMPLING) ? FALSE : TRUE;
  jpeg_start_decompress(cinfo);

  JDIMENSION left = x > 0 ? x - 1 : 0;
  JDIMENSION right = x + w < want_w ? x + w + 1 : want_w;
  JDIMENSION cols = right - left;
  if (left > 0 || right < want_w) jpeg_crop_scanline(cinfo, &left, &cols);
  *out_x = left;
  *out_cols = cinfo->output_width;

  if (y > 0) jpeg_skip_scanlines(cinfo, y);
  size_t stride = (size_t)cinfo->output_width * 3;
  JSAMPROW rows[16];
  while (cinfo->output_scanline < y + h) {
    JDIMENSION at = cinfo->output_scanline - y;
    JDIMENSION n = y + h - cinfo->output_scanline;
    if (n > 16) n = 16;
    for (JDIMENSION i = 0; i < n; i++) rows[i] = out + (size_t)(at + i) * stride;
    jpeg_read_scanlines(cinfo, rows, n);
  }
  if (y + h == want_h)
    jpeg_finish_decompress(cinfo);
  else
    jpeg_abort_decompress(cinfo);
  return REGION_OK;
}
