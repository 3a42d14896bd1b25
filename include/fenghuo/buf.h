/* A growable byte buffer with the JSON writing helpers the alert and
 * snapshot code need. Allocation failure aborts the process via
 * fh_buf_oom(): every caller would have had to drop an alert otherwise, and
 * a daemon that cannot allocate a few hundred bytes cannot go on safely. */
#ifndef FENGHUO_BUF_H
#define FENGHUO_BUF_H

#include "fenghuo/common.h"

typedef struct fh_buf {
        char *data;   /* NUL-terminated whenever len > 0 or after any append */
        size_t len;
        size_t cap;
} fh_buf;

#define FH_BUF_NULL { NULL, 0, 0 }

void fh_buf_reserve(fh_buf *b, size_t extra);
void fh_buf_append(fh_buf *b, const void *p, size_t n);
void fh_buf_puts(fh_buf *b, const char *s);
void fh_buf_putc(fh_buf *b, char c);
__attribute__((format(printf, 2, 3)))
void fh_buf_printf(fh_buf *b, const char *fmt, ...);
void fh_buf_reset(fh_buf *b);          /* len = 0, keeps memory */
void fh_buf_free(fh_buf *b);           /* releases memory, back to FH_BUF_NULL */

/* JSON string with quotes; escapes ", \, control characters; UTF-8 passes
 * through (callers hand in validated UTF-8). */
void fh_buf_json_string(fh_buf *b, const char *s, size_t n);
/* JSON-quotes, in place, the bytes appended since offset from: what to
 * format straight into b and then put in a JSON string, without a buffer
 * of its own. */
void fh_buf_json_quote_tail(fh_buf *b, size_t from);
/* Shortest text that reads back as the same double; `null` for NaN/inf. */
void fh_buf_json_number(fh_buf *b, double v);

/* Little-endian binary helpers for snapshots. */
void fh_buf_u8(fh_buf *b, uint8_t v);
void fh_buf_u32(fh_buf *b, uint32_t v);
void fh_buf_u64(fh_buf *b, uint64_t v);
void fh_buf_f64(fh_buf *b, double v);
void fh_buf_str(fh_buf *b, const char *s, size_t n); /* u32 length + bytes */

/* Reader for the same encoding: every getter returns -EBADMSG past the end
 * and leaves *ret untouched. */
typedef struct fh_rd {
        const uint8_t *p;
        size_t n;
        size_t off;
} fh_rd;
int fh_rd_u8(fh_rd *r, uint8_t *ret);
int fh_rd_u32(fh_rd *r, uint32_t *ret);
int fh_rd_u64(fh_rd *r, uint64_t *ret);
int fh_rd_f64(fh_rd *r, double *ret);
int fh_rd_str(fh_rd *r, const char **ret, size_t *ret_len); /* points into the input */

_Noreturn void fh_oom(void);
void *fh_malloc(size_t n);             /* never returns NULL */
void *fh_calloc(size_t n, size_t m);
void *fh_realloc(void *p, size_t n);
char *fh_strndup(const char *s, size_t n);
char *fh_strdup(const char *s);

#endif
