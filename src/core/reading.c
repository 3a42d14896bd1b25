/* The reading parser: one pass over one JSON object, no allocation.
 *
 * Which reason wins when a line has several problems:
 *  - A line over FH_READING_BYTES_MAX is too_long before anything is read.
 *  - A JSON syntax error (and the other malformed_json cases: invalid UTF-8,
 *    nesting too deep, a duplicate sensor/ts/values key) always wins: after
 *    one the parser cannot go on, and a line that is not JSON should be
 *    counted as such whatever it appears to contain before the break.
 *  - Otherwise the first schema problem in text order wins. The parser keeps
 *    reading after it only to check the rest is valid JSON. Each scalar is
 *    read whole before its meaning is checked, so an unterminated string is
 *    malformed_json, not a bad sensor.
 *  - Missing fields can only be known at the end, so they come last. */
#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fenghuo/reading.h"
#include "fenghuo/timeutil.h"

/* How much of a user's text a reason may quote. */
#define QUOTE_MAX 40

/* Decimal digits kept for strtod: halfway points between doubles have at
 * most 767 significant digits, so 780 digits plus a sticky digit for
 * whatever was cut off round exactly as the whole number would. */
#define SLOW_DIGITS_MAX 780

/* A decoded timestamp with escapes in it is copied; a real one is ~30
 * bytes, so this only limits absurd ones. */
#define TS_COPY_MAX 128

typedef struct parser {
        const uint8_t *start;   /* the line, for columns in reasons */
        const uint8_t *p;
        const uint8_t *end;
        char *why;
        size_t why_len;
        fh_reject err;          /* first schema problem, NONE while there is none */
} parser;

/* The result of reading a string. */
typedef struct str_tok {
        const uint8_t *raw;     /* first byte after the opening quote */
        size_t raw_len;         /* bytes up to the closing quote */
        size_t len;             /* decoded length; may exceed what was copied */
        bool escaped;           /* raw != decoded */
} str_tok;

/* The result of reading a number: its text, split for conversion. */
typedef struct num_tok {
        const uint8_t *text;
        size_t text_len;
        bool neg;
        bool is_int;            /* no fraction, no exponent */
        bool exact;             /* all digits are in mant */
        uint64_t mant;          /* significant digits, as far as they fit */
        int ndigits;            /* how many digits mant holds (leading zeros not counted) */
        int64_t exp10;          /* value = mant * 10^exp10 when exact */
} num_tok;

/* ---- Reasons -------------------------------------------------------- */

typedef struct why_out {
        char *buf;
        size_t cap;
        size_t len;
} why_out;

static void w_putn(why_out *w, const char *s, size_t n) {
        if (w->cap == 0)
                return;
        size_t room = w->cap - 1 - w->len;
        if (n > room)
                n = room;
        memcpy(w->buf + w->len, s, n);
        w->len += n;
        w->buf[w->len] = '\0';
}

static void w_puts(why_out *w, const char *s) {
        w_putn(w, s, strlen(s));
}

__attribute__((format(printf, 2, 3)))
static void w_printf(why_out *w, const char *fmt, ...) {
        char tmp[128];
        va_list ap;
        int n;

        va_start(ap, fmt);
        n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
        va_end(ap);
        if (n > 0)
                w_putn(w, tmp, FH_MIN((size_t)n, sizeof(tmp) - 1));
}

/* User text, quoted so the reason stays one printable ASCII line: at most
 * QUOTE_MAX bytes of it, other bytes as \xHH, "..." after a cut. */
static void w_quote(why_out *w, const void *text, size_t n) {
        const uint8_t *s = text;
        size_t shown = FH_MIN(n, (size_t)QUOTE_MAX);

        w_putn(w, "\"", 1);
        for (size_t i = 0; i < shown; i++) {
                uint8_t c = s[i];
                if (c == '"' || c == '\\') {
                        char e[2] = { '\\', (char)c };
                        w_putn(w, e, 2);
                } else if (c >= 0x20 && c < 0x7f) {
                        w_putn(w, (const char *)&c, 1);
                } else {
                        w_printf(w, "\\x%02x", c);
                }
        }
        w_putn(w, "\"", 1);
        if (shown < n)
                w_puts(w, "...");
}

static why_out why_begin(parser *p) {
        why_out w = { p->why, p->why_len, 0 };

        if (w.cap > 0)
                w.buf[0] = '\0';
        return w;
}

/* A syntax error: always returns -1 so callers can `return syntax(...)`. */
static int syntax(parser *p, const uint8_t *at, const char *what) {
        why_out w = why_begin(p);

        p->err = FH_REJECT_MALFORMED_JSON;
        w_printf(&w, "malformed JSON at column %zu: %s", (size_t)(at - p->start) + 1, what);
        return -1;
}

/* Starts the reason for a schema problem, or returns false when an earlier
 * one was already recorded (it wins). */
static bool schema(parser *p, fh_reject r, why_out *ret_w) {
        if (p->err != FH_REJECT_NONE)
                return false;
        p->err = r;
        *ret_w = why_begin(p);
        return true;
}

/* ---- Lexical pieces ------------------------------------------------- */

/* Character classes, one table lookup on the hot paths. */
enum {
        C_PLAIN  = 1 << 0,      /* copied as is inside a string */
        C_WS     = 1 << 1,      /* JSON whitespace */
        C_SENSOR = 1 << 2,      /* allowed in a sensor id */
        C_FIELD  = 1 << 3,      /* allowed after the first letter of a field name */
};

#define CLS(c) \
        ((((c) >= 0x20 && (c) < 0x80 && (c) != '"' && (c) != '\\') ? C_PLAIN : 0) | \
         (((c) == ' ' || (c) == '\t' || (c) == '\n' || (c) == '\r') ? C_WS : 0) | \
         ((((c) >= 'A' && (c) <= 'Z') || ((c) >= 'a' && (c) <= 'z') || ((c) >= '0' && (c) <= '9') || \
           (c) == '.' || (c) == '_' || (c) == ':' || (c) == '-') ? C_SENSOR : 0) | \
         ((((c) >= 'a' && (c) <= 'z') || ((c) >= '0' && (c) <= '9') || (c) == '_') ? C_FIELD : 0))
#define CLS4(c) CLS(c), CLS((c) + 1), CLS((c) + 2), CLS((c) + 3)
#define CLS16(c) CLS4(c), CLS4((c) + 4), CLS4((c) + 8), CLS4((c) + 12)
#define CLS64(c) CLS16(c), CLS16((c) + 16), CLS16((c) + 32), CLS16((c) + 48)

static const uint8_t cls[256] = { CLS64(0), CLS64(64), CLS64(128), CLS64(192) };

static inline void skip_ws(parser *p) {
        while (p->p < p->end && (cls[*p->p] & C_WS))
                p->p++;
}

static inline bool is_plain(uint8_t c) {
        return cls[c] & C_PLAIN;
}

/* How many of s[0..8) are plain before the first one that is not (8 when
 * all are). Whole-word tests: each flags exactly the lowest byte that is
 * >= 0x80, < 0x20, '"' or '\\' (bytes above it may be flagged wrongly, but
 * only the lowest counts), so a string costs a few instructions per eight
 * bytes instead of a table lookup per byte. */
static inline unsigned plain_run8(const uint8_t *s) {
        const uint64_t ones = 0x0101010101010101u, high = 0x8080808080808080u;
        uint64_t x, q, b, m;

        memcpy(&x, s, sizeof(x));
        q = x ^ (ones * '"');
        b = x ^ (ones * '\\');
        m = (x | ((x - ones * 0x20) & ~x) | ((q - ones) & ~q) | ((b - ones) & ~b)) & high;
        if (m == 0)
                return 8;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
        return (unsigned)__builtin_ctzll(m) >> 3;
#else
        unsigned i = 0;
        while (is_plain(s[i]))
                i++;
        return i;
#endif
}

static int hex4(const uint8_t *s) {
        int v = 0;

        for (int i = 0; i < 4; i++) {
                uint8_t c = s[i];
                v <<= 4;
                if (c >= '0' && c <= '9')
                        v |= c - '0';
                else if (c >= 'a' && c <= 'f')
                        v |= c - 'a' + 10;
                else if (c >= 'A' && c <= 'F')
                        v |= c - 'A' + 10;
                else
                        return -1;
        }
        return v;
}

/* Length of the valid UTF-8 sequence at s (lead byte >= 0x80), or 0.
 * Overlong forms, surrogates and code points above U+10FFFF are invalid. */
static size_t utf8_seq(const uint8_t *s, const uint8_t *end) {
        size_t avail = (size_t)(end - s);
        uint8_t c = s[0];
        uint8_t lo = 0x80, hi = 0xbf;
        size_t n;

        if (c >= 0xc2 && c <= 0xdf)
                n = 2;
        else if (c >= 0xe0 && c <= 0xef)
                n = 3;
        else if (c >= 0xf0 && c <= 0xf4)
                n = 4;
        else
                return 0;
        if (c == 0xe0)
                lo = 0xa0;              /* overlong below U+0800 */
        else if (c == 0xed)
                hi = 0x9f;              /* surrogates U+D800-DFFF */
        else if (c == 0xf0)
                lo = 0x90;              /* overlong below U+10000 */
        else if (c == 0xf4)
                hi = 0x8f;              /* above U+10FFFF */
        if (avail < n || s[1] < lo || s[1] > hi)
                return 0;
        for (size_t i = 2; i < n; i++)
                if ((s[i] & 0xc0) != 0x80)
                        return 0;
        return n;
}

static size_t utf8_put(uint8_t *o, uint32_t cp) {
        if (cp < 0x80) {
                o[0] = (uint8_t)cp;
                return 1;
        }
        if (cp < 0x800) {
                o[0] = (uint8_t)(0xc0 | cp >> 6);
                o[1] = (uint8_t)(0x80 | (cp & 0x3f));
                return 2;
        }
        if (cp < 0x10000) {
                o[0] = (uint8_t)(0xe0 | cp >> 12);
                o[1] = (uint8_t)(0x80 | (cp >> 6 & 0x3f));
                o[2] = (uint8_t)(0x80 | (cp & 0x3f));
                return 3;
        }
        o[0] = (uint8_t)(0xf0 | cp >> 18);
        o[1] = (uint8_t)(0x80 | (cp >> 12 & 0x3f));
        o[2] = (uint8_t)(0x80 | (cp >> 6 & 0x3f));
        o[3] = (uint8_t)(0x80 | (cp & 0x3f));
        return 4;
}

/* Reads the string whose opening quote is at p->p, validating it, and
 * copies up to cap decoded bytes to out (which may be NULL when cap is 0).
 * t->len counts every decoded byte, so callers see an over-long string. */
static int read_string(parser *p, char *out, size_t cap, str_tok *t) {
        const uint8_t *s = p->p + 1, *end = p->end;
        size_t n = 0;

        t->raw = s;
        t->escaped = false;
        for (;;) {
                const uint8_t *run = s;
                uint8_t dec[4];
                size_t k;

                while (end - s >= 8) {
                        unsigned k8 = plain_run8(s);
                        s += k8;
                        if (k8 < 8)
                                break;
                }
                while (s < end && is_plain(*s))
                        s++;
                k = (size_t)(s - run);
                if (n < cap)
                        memcpy(out + n, run, FH_MIN(k, cap - n));
                n += k;
                if (s == end)
                        return syntax(p, t->raw - 1, "unterminated string");
                if (*s == '"')
                        break;
                if (*s == '\\') {
                        const uint8_t *esc = s;
                        t->escaped = true;
                        if (end - s < 2)
                                return syntax(p, esc, "unterminated string");
                        switch (s[1]) {
                        case '"': dec[0] = '"'; k = 1; break;
                        case '\\': dec[0] = '\\'; k = 1; break;
                        case '/': dec[0] = '/'; k = 1; break;
                        case 'b': dec[0] = '\b'; k = 1; break;
                        case 'f': dec[0] = '\f'; k = 1; break;
                        case 'n': dec[0] = '\n'; k = 1; break;
                        case 'r': dec[0] = '\r'; k = 1; break;
                        case 't': dec[0] = '\t'; k = 1; break;
                        case 'u': {
                                int u, lo;
                                uint32_t cp;
                                if (end - s < 6 || (u = hex4(s + 2)) < 0)
                                        return syntax(p, esc, "\\u needs four hex digits");
                                s += 4;
                                if (u >= 0xdc00 && u <= 0xdfff)
                                        return syntax(p, esc, "\\u escape is a lone low surrogate");
                                cp = (uint32_t)u;
                                if (u >= 0xd800 && u <= 0xdbff) {
                                        if (end - s < 8 || s[2] != '\\' || s[3] != 'u' ||
                                            (lo = hex4(s + 4)) < 0xdc00 || lo > 0xdfff)
                                                return syntax(p, esc,
                                                              "\\u escape is a high surrogate without a low one");
                                        cp = 0x10000 + ((cp - 0xd800) << 10) + ((uint32_t)lo - 0xdc00);
                                        s += 6;
                                }
                                k = utf8_put(dec, cp);
                                break;
                        }
                        default:
                                return syntax(p, esc, "invalid escape in string");
                        }
                        s += 2;
                } else if (*s < 0x20) {
                        return syntax(p, s, "control character in string (must be escaped)");
                } else {
                        k = utf8_seq(s, end);
                        if (k == 0)
                                return syntax(p, s, "invalid UTF-8 in string");
                        memcpy(dec, s, k);
                        s += k;
                }
                for (size_t i = 0; i < k; i++, n++)
                        if (n < cap)
                                out[n] = (char)dec[i];
        }
        t->raw_len = (size_t)(s - t->raw);
        t->len = n;
        p->p = s + 1;
        return 0;
}

static bool is_digit(uint8_t c) {
        return c >= '0' && c <= '9';
}

/* Reads the number at p->p, as JSON writes it. Exponents are saturated far
 * beyond where a double becomes 0 or infinite, so no input overflows. */
static int read_number(parser *p, num_tok *t) {
        const uint8_t *s = p->p, *end = p->end;
        uint64_t mant = 0;
        int nd = 0;
        int64_t e10 = 0;
        bool exact = true;

        t->text = s;
        t->neg = false;
        t->is_int = true;
        if (*s == '-') {
                t->neg = true;
                s++;
        }
        if (s == end || !is_digit(*s))
                return syntax(p, t->text, "invalid number");
        if (*s == '0') {
                s++;
                if (s < end && is_digit(*s))
                        return syntax(p, t->text, "leading zeros are not allowed in numbers");
        } else {
                for (; s < end && is_digit(*s); s++) {
                        if (nd < 19) {
                                mant = mant * 10 + (uint64_t)(*s - '0');
                                nd++;
                        } else {
                                e10++;
                                exact = false;
                        }
                }
        }
        if (s < end && *s == '.') {
                t->is_int = false;
                s++;
                if (s == end || !is_digit(*s))
                        return syntax(p, s, "expected a digit after '.'");
                for (; s < end && is_digit(*s); s++) {
                        if (mant == 0 && *s == '0') {
                                e10--;  /* a leading zero only moves the point */
                        } else if (nd < 19) {
                                mant = mant * 10 + (uint64_t)(*s - '0');
                                nd++;
                                e10--;
                        } else {
                                exact = false;
                        }
                }
        }
        if (s < end && (*s == 'e' || *s == 'E')) {
                bool eneg = false;
                int64_t e = 0;
                t->is_int = false;
                s++;
                if (s < end && (*s == '+' || *s == '-'))
                        eneg = *s++ == '-';
                if (s == end || !is_digit(*s))
                        return syntax(p, s, "expected a digit in the exponent");
                for (; s < end && is_digit(*s); s++)
                        if (e < 1000000)
                                e = e * 10 + (*s - '0');
                e10 += eneg ? -e : e;
        }
        t->text_len = (size_t)(s - t->text);
        t->mant = mant;
        t->ndigits = nd;
        t->exp10 = e10;
        t->exact = exact;
        p->p = s;
        return 0;
}

static const double pow10_exact[] = {
        1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11,
        1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
};

/* Writes the token's digits as "D...De<exp>" with at most SLOW_DIGITS_MAX
 * significant digits (see there) and hands that to strtod. */
static double number_slow(const num_tok *t) {
        char buf[SLOW_DIGITS_MAX + 40];
        const uint8_t *s = t->text, *end = t->text + t->text_len;
        size_t n = 0;
        int64_t e10 = 0, dropped = 0;
        bool sticky = false, started = false, in_frac = false;

        if (t->neg)
                buf[n++] = '-';
        for (; s < end; s++) {
                if (*s == '-')
                        continue;
                if (*s == '.') {
                        in_frac = true;
                        continue;
                }
                if (*s == 'e' || *s == 'E')
                        break;
                if (in_frac)
                        e10--;
                if (!started && *s == '0')
                        continue;
                started = true;
                if (n < (t->neg ? 1u : 0u) + SLOW_DIGITS_MAX) {
                        buf[n++] = (char)*s;
                } else {
                        dropped++;
                        sticky |= *s != '0';
                }
        }
        if (!started)
                buf[n++] = '0';
        if (sticky) {
                buf[n++] = '1';
                dropped--;
        }
        if (s < end) {
                /* Saturated like read_number, so the sum cannot overflow. */
                bool eneg = false;
                int64_t e = 0;
                s++;
                if (*s == '+' || *s == '-')
                        eneg = *s++ == '-';
                for (; s < end; s++)
                        if (e < 1000000)
                                e = e * 10 + (*s - '0');
                e10 += eneg ? -e : e;
        }
        e10 += dropped;
        snprintf(buf + n, sizeof(buf) - n, "e%lld", (long long)e10);
        return strtod(buf, NULL);
}

/* Correctly rounded: when the digits and the power of ten are both exact
 * doubles, one IEEE multiplication or division rounds correctly; every
 * other case goes to strtod. */
static double number_value(const num_tok *t) {
        double v;

        if (t->mant == 0 && t->exact)
                return t->neg ? -0.0 : 0.0;
        /* Extended-precision arithmetic (x87) would round twice. */
        if (FLT_EVAL_METHOD == 0 && t->exact && t->mant <= (UINT64_C(1) << 53) && t->exp10 >= -22 &&
            t->exp10 <= 22) {
                v = (double)t->mant;
                v = t->exp10 >= 0 ? v * pow10_exact[t->exp10] : v / pow10_exact[-t->exp10];
                return t->neg ? -v : v;
        }
        return number_slow(t);
}

static int read_literal(parser *p) {
        static const char *const lits[] = { "true", "false", "null" };
        size_t avail = (size_t)(p->end - p->p);

        for (size_t i = 0; i < FH_ARRAY_SIZE(lits); i++) {
                size_t n = strlen(lits[i]);
                if (lits[i][0] == *p->p) {
                        if (avail < n || memcmp(p->p, lits[i], n) != 0)
                                break;
                        p->p += n;
                        return 0;
                }
        }
        return syntax(p, p->p, "invalid literal (expected true, false or null)");
}

/* Reads "key" : and leaves p->p at the value. */
static int read_key(parser *p, char *out, size_t cap, str_tok *t) {
        if (p->p == p->end || *p->p != '"')
                return syntax(p, p->p, p->p == p->end ? "unexpected end of line, expected a key"
                                                      : "expected a string key");
        if (read_string(p, out, cap, t) < 0)
                return -1;
        skip_ws(p);
        if (p->p == p->end || *p->p != ':')
                return syntax(p, p->p, "expected ':' after a key");
        p->p++;
        skip_ws(p);
        return 0;
}

/* Validates and skips any value; `depth` is the nesting level of the
 * container holding it. Iterative, with the open containers on a small
 * stack, so no input can exhaust the C stack. */
static int skip_value(parser *p, unsigned depth) {
        uint8_t open[FH_JSON_DEPTH_MAX];
        unsigned n = 0;
        str_tok t;
        num_tok num;

        for (;;) {
                /* At the start of a value. */
                skip_ws(p);
                if (p->p == p->end)
                        return syntax(p, p->p, "unexpected end of line, expected a value");
                switch (*p->p) {
                case '{':
                case '[':
                        if (depth + n >= FH_JSON_DEPTH_MAX)
                                return syntax(p, p->p, "nested too deep");
                        open[n++] = *p->p++;
                        skip_ws(p);
                        if (p->p < p->end && *p->p == (open[n - 1] == '{' ? '}' : ']')) {
                                p->p++;
                                n--;
                                break;
                        }
                        if (open[n - 1] == '{' && read_key(p, NULL, 0, &t) < 0)
                                return -1;
                        continue;
                case '"':
                        if (read_string(p, NULL, 0, &t) < 0)
                                return -1;
                        break;
                case 't':
                case 'f':
                case 'n':
                        if (read_literal(p) < 0)
                                return -1;
                        break;
                default:
                        if (read_number(p, &num) < 0)
                                return -1;
                        break;
                }
                /* After a value: close containers or go on to the next member. */
                for (;;) {
                        if (n == 0)
                                return 0;
                        skip_ws(p);
                        if (p->p == p->end)
                                return syntax(p, p->p, "unexpected end of line");
                        if (*p->p == ',') {
                                p->p++;
                                skip_ws(p);
                                if (open[n - 1] == '{' && read_key(p, NULL, 0, &t) < 0)
                                        return -1;
                                break;
                        }
                        if (*p->p != (open[n - 1] == '{' ? '}' : ']'))
                                return syntax(p, p->p, open[n - 1] == '{' ? "expected ',' or '}'"
                                                                          : "expected ',' or ']'");
                        p->p++;
                        n--;
                }
        }
}

/* Skips a value of the wrong type and names what it was. */
static int skip_wrong_type(parser *p, unsigned depth, const char **ret_what) {
        switch (*p->p) {
        case '"': *ret_what = "a string"; break;
        case '{': *ret_what = "an object"; break;
        case '[': *ret_what = "an array"; break;
        case 't':
        case 'f': *ret_what = "a boolean"; break;
        case 'n': *ret_what = "null"; break;
        default: *ret_what = "a number"; break;
        }
        return skip_value(p, depth);
}

/* ---- The schema ----------------------------------------------------- */

static bool sensor_char(uint8_t c) {
        return cls[c] & C_SENSOR;
}

static int parse_sensor(parser *p, fh_reading *r) {
        /* Room for the longest id plus enough to quote an over-long one. */
        char buf[FH_SENSOR_ID_MAX + 1];
        const char *what;
        str_tok t;
        why_out w;

        if (*p->p != '"') {
                if (skip_wrong_type(p, 1, &what) < 0)
                        return -1;
                if (schema(p, FH_REJECT_BAD_SENSOR, &w))
                        w_printf(&w, "bad sensor: %s, expected a string", what);
                return 0;
        }
        if (read_string(p, buf, sizeof(buf), &t) < 0)
                return -1;
        if (t.len == 0) {
                if (schema(p, FH_REJECT_BAD_SENSOR, &w))
                        w_puts(&w, "bad sensor: empty string");
                return 0;
        }
        if (t.len > FH_SENSOR_ID_MAX) {
                if (schema(p, FH_REJECT_BAD_SENSOR, &w)) {
                        w_puts(&w, "bad sensor: ");
                        w_quote(&w, buf, t.len);
                        w_printf(&w, ": longer than %d characters", FH_SENSOR_ID_MAX);
                }
                return 0;
        }
        for (size_t i = 0; i < t.len; i++) {
                if (!sensor_char((uint8_t)buf[i])) {
                        if (schema(p, FH_REJECT_BAD_SENSOR, &w)) {
                                w_puts(&w, "bad sensor: ");
                                w_quote(&w, buf, t.len);
                                w_puts(&w, ": only A-Z a-z 0-9 . _ : - are allowed");
                        }
                        return 0;
                }
        }
        memcpy(r->sensor, buf, t.len);
        r->sensor[t.len] = '\0';
        r->sensor_len = (uint8_t)t.len;
        return 0;
}

static int parse_ts(parser *p, fh_reading *r) {
        const char *what, *why = NULL;
        why_out w;

        if (*p->p == '"') {
                char buf[TS_COPY_MAX];
                const char *text;
                str_tok t;
                if (read_string(p, buf, sizeof(buf), &t) < 0)
                        return -1;
                if (!t.escaped)
                        text = (const char *)t.raw;
                else if (t.len <= sizeof(buf))
                        text = buf;
                else
                        text = NULL;
                if (!text)
                        why = "too long";
                else if (fh_time_parse_rfc3339(text, t.len, &r->ts_ms, &why) == 0)
                        return 0;
                if (schema(p, FH_REJECT_BAD_TIMESTAMP, &w)) {
                        w_puts(&w, "bad timestamp: ");
                        w_quote(&w, text ? text : buf, FH_MIN(t.len, text ? t.len : sizeof(buf)));
                        w_printf(&w, ": %s", why);
                }
                return 0;
        }
        if (*p->p == '-' || is_digit(*p->p)) {
                num_tok t;
                if (read_number(p, &t) < 0)
                        return -1;
                if (!t.is_int) {
                        why = "epoch milliseconds must be an integer";
                } else {
                        /* 16 digits already exceed the range; no overflow below. */
                        int64_t v = t.ndigits > 16 || !t.exact ? INT64_MAX : (int64_t)t.mant;
                        if (t.neg)
                                v = -v;
                        if (v >= FH_TIME_MIN_MS && v <= FH_TIME_MAX_MS) {
                                r->ts_ms = v;
                                return 0;
                        }
                        why = "out of range (years 0001-9999)";
                }
                if (schema(p, FH_REJECT_BAD_TIMESTAMP, &w)) {
                        w_puts(&w, "bad timestamp: ");
                        w_putn(&w, (const char *)t.text, FH_MIN(t.text_len, (size_t)QUOTE_MAX));
                        w_printf(&w, "%s: %s", t.text_len > QUOTE_MAX ? "..." : "", why);
                }
                return 0;
        }
        if (skip_wrong_type(p, 1, &what) < 0)
                return -1;
        if (schema(p, FH_REJECT_BAD_TIMESTAMP, &w))
                w_printf(&w, "bad timestamp: %s, expected an RFC 3339 string or epoch milliseconds", what);
        return 0;
}

static bool field_name_ok(const char *s, size_t n) {
        if (n < 1 || n > FH_FIELD_NAME_MAX || !(s[0] >= 'a' && s[0] <= 'z'))
                return false;
        for (size_t i = 1; i < n; i++)
                if (!(cls[(uint8_t)s[i]] & C_FIELD))
                        return false;
        return true;
}

/* One member of "values"; p->p is at its key. */
static int parse_value_member(parser *p, fh_reading *r) {
        char key[QUOTE_MAX + 1];
        const char *what;
        fh_value *v = NULL;
        str_tok t;
        why_out w;

        if (read_key(p, key, sizeof(key), &t) < 0)
                return -1;
        if (p->err != FH_REJECT_NONE) {
                /* Only validation is left to do. */
        } else if (!field_name_ok(key, t.len)) {
                if (schema(p, FH_REJECT_BAD_VALUES, &w)) {
                        w_puts(&w, "bad values: field name ");
                        w_quote(&w, key, t.len);
                        w_printf(&w, " must match [a-z][a-z0-9_]{0,%d}", FH_FIELD_NAME_MAX - 1);
                }
        } else if (r->n_values == FH_VALUES_MAX) {
                if (schema(p, FH_REJECT_BAD_VALUES, &w))
                        w_printf(&w, "bad values: more than %d members", FH_VALUES_MAX);
        } else {
                for (unsigned i = 0; i < r->n_values; i++) {
                        if (r->values[i].name_len == t.len && memcmp(r->values[i].name, key, t.len) == 0) {
                                if (schema(p, FH_REJECT_BAD_VALUES, &w)) {
                                        w_puts(&w, "bad values: duplicate field ");
                                        w_quote(&w, key, t.len);
                                }
                                break;
                        }
                }
                if (p->err == FH_REJECT_NONE)
                        v = &r->values[r->n_values];
        }

        if (p->p == p->end)
                return syntax(p, p->p, "unexpected end of line, expected a value");
        if (*p->p == '-' || is_digit(*p->p)) {
                num_tok num;
                double d;
                if (read_number(p, &num) < 0)
                        return -1;
                if (!v)
                        return 0;
                d = number_value(&num);
                if (!isfinite(d)) {
                        if (schema(p, FH_REJECT_BAD_VALUE, &w)) {
                                w_puts(&w, "bad value for ");
                                w_quote(&w, key, t.len);
                                w_puts(&w, ": not a finite number");
                        }
                        return 0;
                }
                memcpy(v->name, key, t.len);
                v->name[t.len] = '\0';
                v->name_len = (uint8_t)t.len;
                v->v = d;
                r->n_values++;
                return 0;
        }
        if (skip_wrong_type(p, 2, &what) < 0)
                return -1;
        if (v && schema(p, FH_REJECT_BAD_VALUE, &w)) {
                w_puts(&w, "bad value for ");
                w_quote(&w, key, t.len);
                w_printf(&w, ": %s, expected a number", what);
        }
        return 0;
}

static int parse_values(parser *p, fh_reading *r) {
        const char *what;
        why_out w;

        if (*p->p != '{') {
                if (skip_wrong_type(p, 1, &what) < 0)
                        return -1;
                if (schema(p, FH_REJECT_BAD_VALUES, &w))
                        w_printf(&w, "bad values: %s, expected an object of numbers", what);
                return 0;
        }
        p->p++;
        skip_ws(p);
        if (p->p < p->end && *p->p == '}') {
                p->p++;
                if (schema(p, FH_REJECT_BAD_VALUES, &w))
                        w_puts(&w, "bad values: empty object, expected at least one value");
                return 0;
        }
        for (;;) {
                if (parse_value_member(p, r) < 0)
                        return -1;
                skip_ws(p);
                if (p->p == p->end)
                        return syntax(p, p->p, "unexpected end of line, expected ',' or '}'");
                if (*p->p == '}') {
                        p->p++;
                        return 0;
                }
                if (*p->p != ',')
                        return syntax(p, p->p, "expected ',' or '}'");
                p->p++;
                skip_ws(p);
        }
}

enum {
        SEEN_SENSOR = 1 << 0,
        SEEN_TS     = 1 << 1,
        SEEN_VALUES = 1 << 2,
};

static int parse_object(parser *p, fh_reading *r) {
        unsigned seen = 0;
        why_out w;

        skip_ws(p);
        if (p->p == p->end)
                return syntax(p, p->p, "empty line, expected a JSON object");
        if (*p->p != '{')
                return syntax(p, p->p, "expected a JSON object");
        p->p++;
        skip_ws(p);
        if (p->p < p->end && *p->p == '}') {
                p->p++;
        } else {
                for (;;) {
                        /* Long enough to tell the three names from any other. */
                        char key[8];
                        const uint8_t *at = p->p;
                        unsigned which = 0;
                        str_tok t;
                        int rc;

                        if (read_key(p, key, sizeof(key), &t) < 0)
                                return -1;
                        if (t.len == 6 && memcmp(key, "sensor", 6) == 0)
                                which = SEEN_SENSOR;
                        else if (t.len == 2 && memcmp(key, "ts", 2) == 0)
                                which = SEEN_TS;
                        else if (t.len == 6 && memcmp(key, "values", 6) == 0)
                                which = SEEN_VALUES;
                        if (which & seen) {
                                char what[32];
                                snprintf(what, sizeof(what), "duplicate key \"%.*s\"", (int)t.len, key);
                                return syntax(p, at, what);
                        }
                        seen |= which;
                        if (p->p == p->end)
                                return syntax(p, p->p, "unexpected end of line, expected a value");
                        if (which == 0 || p->err != FH_REJECT_NONE)
                                rc = skip_value(p, 1);
                        else if (which == SEEN_SENSOR)
                                rc = parse_sensor(p, r);
                        else if (which == SEEN_TS)
                                rc = parse_ts(p, r);
                        else
                                rc = parse_values(p, r);
                        if (rc < 0)
                                return -1;
                        skip_ws(p);
                        if (p->p == p->end)
                                return syntax(p, p->p, "unexpected end of line, expected ',' or '}'");
                        if (*p->p == '}') {
                                p->p++;
                                break;
                        }
                        if (*p->p != ',')
                                return syntax(p, p->p, "expected ',' or '}'");
                        p->p++;
                        skip_ws(p);
                }
        }
        skip_ws(p);
        if (p->p != p->end)
                return syntax(p, p->p, "unexpected characters after the object");
        if (p->err != FH_REJECT_NONE)
                return 0;
        if (seen != (SEEN_SENSOR | SEEN_TS | SEEN_VALUES)) {
                const char *name = !(seen & SEEN_SENSOR) ? "sensor" : !(seen & SEEN_TS) ? "ts" : "values";
                if (schema(p, FH_REJECT_MISSING_FIELD, &w))
                        w_printf(&w, "missing field \"%s\"", name);
        }
        return 0;
}

fh_reject fh_reading_parse(const char *buf, size_t len, fh_reading *ret, char *why, size_t why_len) {
        parser p = {
                .start = (const uint8_t *)buf,
                .p = (const uint8_t *)buf,
                .end = (const uint8_t *)buf + len,
                .why = why,
                .why_len = why_len,
                .err = FH_REJECT_NONE,
        };

        if (why_len > 0)
                why[0] = '\0';
        if (len > FH_READING_BYTES_MAX) {
                why_out w = why_begin(&p);
                w_printf(&w, "line too long: %zu bytes, the limit is %d", len, FH_READING_BYTES_MAX);
                return FH_REJECT_TOO_LONG;
        }
        ret->sensor_len = 0;
        ret->sensor[0] = '\0';
        ret->n_values = 0;
        (void)parse_object(&p, ret);
        return p.err;
}

const char *fh_reject_name(fh_reject r) {
        static const char *const names[FH_REJECT__MAX] = {
                [FH_REJECT_NONE] = "none",
                [FH_REJECT_MALFORMED_JSON] = "malformed_json",
                [FH_REJECT_MISSING_FIELD] = "missing_field",
                [FH_REJECT_BAD_SENSOR] = "bad_sensor",
                [FH_REJECT_BAD_TIMESTAMP] = "bad_timestamp",
                [FH_REJECT_BAD_VALUE] = "bad_value",
                [FH_REJECT_BAD_VALUES] = "bad_values",
                [FH_REJECT_UNKNOWN_SENSOR] = "unknown_sensor",
                [FH_REJECT_TOO_LONG] = "too_long",
                [FH_REJECT_RATE_LIMITED] = "rate_limited",
                [FH_REJECT_WINDOW_FULL] = "window_full",
        };

        if ((unsigned)r >= FH_REJECT__MAX)
                return "unknown";
        return names[r];
}
