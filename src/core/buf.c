#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fenghuo/buf.h"

_Noreturn void fh_oom(void) {
        static const char msg[] = "fenghuo: out of memory\n";
        /* stderr is unbuffered, so this needs no allocation. */
        fputs(msg, stderr);
        abort();
}

void *fh_malloc(size_t n) {
        void *p = malloc(n ? n : 1);
        if (!p)
                fh_oom();
        return p;
}

void *fh_calloc(size_t n, size_t m) {
        void *p = calloc(n ? n : 1, m ? m : 1);
        if (!p)
                fh_oom();
        return p;
}

void *fh_realloc(void *p, size_t n) {
        void *q = realloc(p, n ? n : 1);
        if (!q)
                fh_oom();
        return q;
}

char *fh_strndup(const char *s, size_t n) {
        char *p = fh_malloc(n + 1);
        memcpy(p, s, n);
        p[n] = 0;
        return p;
}

char *fh_strdup(const char *s) {
        return fh_strndup(s, strlen(s));
}

void fh_buf_reserve(fh_buf *b, size_t extra) {
        size_t need = b->len + extra + 1;

        if (need <= b->cap)
                return;
        if (need < b->len)
                fh_oom();
        size_t cap = b->cap ? b->cap : 256;
        while (cap < need)
                cap *= 2;
        b->data = fh_realloc(b->data, cap);
        b->cap = cap;
}

void fh_buf_append(fh_buf *b, const void *p, size_t n) {
        fh_buf_reserve(b, n);
        if (n)
                memcpy(b->data + b->len, p, n);
        b->len += n;
        b->data[b->len] = 0;
}

void fh_buf_puts(fh_buf *b, const char *s) {
        fh_buf_append(b, s, strlen(s));
}

void fh_buf_putc(fh_buf *b, char c) {
        fh_buf_reserve(b, 1);
        b->data[b->len++] = c;
        b->data[b->len] = 0;
}

void fh_buf_printf(fh_buf *b, const char *fmt, ...) {
        va_list ap;
        int n;

        /* Try in place first: most lines fit in what is already there. */
        fh_buf_reserve(b, 128);
        va_start(ap, fmt);
        n = vsnprintf(b->data + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
                b->data[b->len] = 0;
                return;
        }
        if ((size_t) n >= b->cap - b->len) {
                fh_buf_reserve(b, (size_t) n);
                va_start(ap, fmt);
                vsnprintf(b->data + b->len, (size_t) n + 1, fmt, ap);
                va_end(ap);
        }
        b->len += (size_t) n;
}

void fh_buf_reset(fh_buf *b) {
        b->len = 0;
        if (b->data)
                b->data[0] = 0;
}

void fh_buf_free(fh_buf *b) {
        free(b->data);
        *b = (fh_buf) FH_BUF_NULL;
}

void fh_buf_json_string(fh_buf *b, const char *s, size_t n) {
        static const char hex[] = "0123456789abcdef";

        fh_buf_reserve(b, n + 2);
        b->data[b->len++] = '"';
        for (size_t i = 0; i < n;) {
                size_t run = i;

                /* Bytes that need no escape go in runs, one copy each. */
                while (run < n && (unsigned char) s[run] >= 0x20 && s[run] != '"' && s[run] != '\\')
                        run++;
                if (run > i) {
                        fh_buf_reserve(b, run - i);
                        memcpy(b->data + b->len, s + i, run - i);
                        b->len += run - i;
                        i = run;
                        continue;
                }
                unsigned char c = (unsigned char) s[i++];
                fh_buf_reserve(b, 6);
                switch (c) {
                case '"': memcpy(b->data + b->len, "\\\"", 2); b->len += 2; break;
                case '\\': memcpy(b->data + b->len, "\\\\", 2); b->len += 2; break;
                case '\n': memcpy(b->data + b->len, "\\n", 2); b->len += 2; break;
                case '\r': memcpy(b->data + b->len, "\\r", 2); b->len += 2; break;
                case '\t': memcpy(b->data + b->len, "\\t", 2); b->len += 2; break;
                default:
                        memcpy(b->data + b->len, "\\u00", 4);
                        b->data[b->len + 4] = hex[c >> 4];
                        b->data[b->len + 5] = hex[c & 15];
                        b->len += 6;
                }
        }
        fh_buf_reserve(b, 1);
        b->data[b->len++] = '"';
        b->data[b->len] = 0;
}

void fh_buf_json_quote_tail(fh_buf *b, size_t from) {
        size_t n = b->len - from;

        /* Escaped, each byte takes at most 6: with that room reserved the
         * escaping below never moves the buffer, so it can read the raw
         * bytes where they are and put the result over them. */
        fh_buf_reserve(b, 6 * n + 2);
        fh_buf_json_string(b, b->data + from, n);
        size_t quoted = b->len - from - n;
        memmove(b->data + from, b->data + from + n, quoted);
        b->len = from + quoted;
        b->data[b->len] = 0;
}

/* The common case of fh_buf_json_number without snprintf and strtod
 * (about 4,000 instructions a number, most of an alert's formatting): a
 * value that is the double nearest k / 10^d for some d <= 6, between 1e-4
 * and 1e9, so k has at most 15 digits. %.15g of such a value is k's digits
 * with the point d from the right (the nearest double is within 2^-53 of
 * k / 10^d, far inside the 15th digit's half unit) and no trailing zero
 * (the smallest d is taken), and it reads back exactly: the same text the
 * general path prints (tests/test_alert.c compares the two). */
static bool json_decimal(fh_buf *b, double v) {
        static const double p10[] = { 1, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6 };
        double a = fabs(v);
        char tmp[32], *end = tmp + sizeof(tmp), *p = end;

        if (!(a >= 1e-4 && a < 1e9))
                return false;
        for (int d = 1; d <= 6; d++) {
                double m = rint(a * p10[d]);
                if (m / p10[d] != a)
                        continue;
                uint64_t k = (uint64_t) m;
                for (int i = 0; i < d; i++, k /= 10)
                        *--p = (char) ('0' + k % 10);
                *--p = '.';
                do {
                        *--p = (char) ('0' + k % 10);
                        k /= 10;
                } while (k);
                if (v < 0)
                        *--p = '-';
                fh_buf_append(b, p, (size_t) (end - p));
                return true;
        }
        return false;
}

void fh_buf_json_number(fh_buf *b, double v) {
        char tmp[32];

        if (!isfinite(v)) {
                fh_buf_puts(b, "null");
                return;
        }
        if (v == 0) {
                /* -0 as "0": gateways compare text. */
                fh_buf_putc(b, '0');
                return;
        }
        if (fabs(v) < 1e15 && v == (double) (int64_t) v) {
                fh_buf_printf(b, "%lld", (long long) (int64_t) v);
                return;
        }
        if (json_decimal(b, v))
                return;
        /* Shortest of %.15g..%.17g that reads back exactly, so 63.5 stays
         * "63.5" and no precision is lost. */
        for (int prec = 15; prec <= 17; prec++) {
                snprintf(tmp, sizeof(tmp), "%.*g", prec, v);
                if (strtod(tmp, NULL) == v)
                        break;
        }
        fh_buf_puts(b, tmp);
}

void fh_buf_u8(fh_buf *b, uint8_t v) {
        fh_buf_append(b, &v, 1);
}

void fh_buf_u32(fh_buf *b, uint32_t v) {
        uint8_t t[4];
        for (int i = 0; i < 4; i++)
                t[i] = (uint8_t) (v >> (8 * i));
        fh_buf_append(b, t, 4);
}

void fh_buf_u64(fh_buf *b, uint64_t v) {
        uint8_t t[8];
        for (int i = 0; i < 8; i++)
                t[i] = (uint8_t) (v >> (8 * i));
        fh_buf_append(b, t, 8);
}

void fh_buf_f64(fh_buf *b, double v) {
        uint64_t u;
        memcpy(&u, &v, 8);
        fh_buf_u64(b, u);
}

void fh_buf_str(fh_buf *b, const char *s, size_t n) {
        fh_buf_u32(b, (uint32_t) n);
        fh_buf_append(b, s, n);
}

int fh_rd_u8(fh_rd *r, uint8_t *ret) {
        if (r->n - r->off < 1)
                return -EBADMSG;
        *ret = r->p[r->off++];
        return 0;
}

int fh_rd_u32(fh_rd *r, uint32_t *ret) {
        uint32_t v = 0;
        if (r->n - r->off < 4)
                return -EBADMSG;
        for (int i = 0; i < 4; i++)
                v |= (uint32_t) r->p[r->off + i] << (8 * i);
        r->off += 4;
        *ret = v;
        return 0;
}

int fh_rd_u64(fh_rd *r, uint64_t *ret) {
        uint64_t v = 0;
        if (r->n - r->off < 8)
                return -EBADMSG;
        for (int i = 0; i < 8; i++)
                v |= (uint64_t) r->p[r->off + i] << (8 * i);
        r->off += 8;
        *ret = v;
        return 0;
}

int fh_rd_f64(fh_rd *r, double *ret) {
        uint64_t u;
        int k = fh_rd_u64(r, &u);
        if (k < 0)
                return k;
        memcpy(ret, &u, 8);
        return 0;
}

int fh_rd_str(fh_rd *r, const char **ret, size_t *ret_len) {
        uint32_t n;
        size_t save = r->off;

        if (fh_rd_u32(r, &n) < 0)
                return -EBADMSG;
        if (r->n - r->off < n) {
                r->off = save;
                return -EBADMSG;
        }
        *ret = (const char *) r->p + r->off;
        *ret_len = n;
        r->off += n;
        return 0;
}
