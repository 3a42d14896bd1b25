/* Rule expressions: lexer, recursive-descent parser with type checking,
 * compilation to postfix code, and the stack machine that runs it.
 *
 * Compilation happens once per rule load and must survive anything a user
 * can type, so every dimension is capped: text length, number of nodes,
 * nesting depth (the parser recurses) and evaluation stack. Names are
 * interned only after an expression compiled cleanly, so a rejected
 * expression leaves no trace in the symbol tables. */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fenghuo/buf.h"
#include "fenghuo/expr.h"
#include "fenghuo/timeutil.h"

#define EXPR_LEN_MAX    4096
#define EXPR_NODES_MAX  256
#define EXPR_DEPTH_MAX  64
#define EXPR_STACK_MAX  64
#define ATTR_NAME_MAX   64
#define NUMBER_TEXT_MAX 64
#define ARGS_MAX        4
/* Per rule set. Far above any real deployment (a reading carries at most
 * 32 fields), and they keep interning, which scans linearly, and the
 * engine's per-sensor window stores bounded. */
#define FIELDS_MAX      1024
#define ATTRS_MAX       1024
#define WINDOWS_MAX     4096

/* ---- symbols ----------------------------------------------------------- */

/* The symbol arrays carry no capacity field: their capacity is implicitly
 * the smallest power of two that holds n, so growing at powers of two keeps
 * appends amortised O(1). Only this file appends to them. */
static void *grow_pow2(void *v, size_t n, size_t size) {
        if (n == 0 || (n & (n - 1)) == 0)
                v = fh_realloc(v, (n ? 2 * n : 1) * size);
        return v;
}

void fh_symbols_clear(fh_symbols *s) {
        if (!s)
                return;
        for (size_t i = 0; i < s->n_fields; i++)
                free(s->fields[i]);
        for (size_t i = 0; i < s->n_attrs; i++)
                free(s->attrs[i]);
        free(s->fields);
        free(s->attrs);
        free(s->windows);
        *s = (fh_symbols) { 0 };
}

static int intern_name(char ***v, size_t *n, size_t max, const char *s, size_t len, size_t *ret) {
        for (size_t i = 0; i < *n; i++)
                if (strlen((*v)[i]) == len && memcmp((*v)[i], s, len) == 0) {
                        *ret = i;
                        return 0;
                }
        if (*n >= max)
                return -E2BIG;
        *v = grow_pow2(*v, *n, sizeof(**v));
        (*v)[*n] = fh_strndup(s, len);
        *ret = (*n)++;
        return 0;
}

static int intern_window(fh_symbols *s, uint16_t field, int64_t ms, size_t *ret) {
        for (size_t i = 0; i < s->n_windows; i++)
                if (s->windows[i].field == field && s->windows[i].ms == ms) {
                        *ret = i;
                        return 0;
                }
        if (s->n_windows >= WINDOWS_MAX)
                return -E2BIG;
        s->windows = grow_pow2(s->windows, s->n_windows, sizeof(*s->windows));
        s->windows[s->n_windows] = (fh_window_key) { .field = field, .ms = ms };
        *ret = s->n_windows++;
        return 0;
}

/* ---- small helpers ----------------------------------------------------- */


/* ---- lexer ------------------------------------------------------------- */

typedef enum tok_kind {
        T_END,
        T_BAD,          /* a lexical error; `bad` says which */
        T_NUM,
        T_DUR,
        T_IDENT,
        T_STATION,      /* "station.<attr>"; name_* is the attribute */
        T_AND, T_OR, T_NOT,
        T_LPAREN, T_RPAREN, T_COMMA,
        T_PLUS, T_MINUS, T_STAR, T_SLASH,
        T_LT, T_LE, T_GT, T_GE, T_EQ, T_NE,
} tok_kind;

typedef enum bad_kind {
        BAD_CHAR,
        BAD_NUMBER,
        BAD_NUMBER_RANGE,
        BAD_FRACTIONAL_WINDOW,
        BAD_WINDOW_RANGE,
        BAD_NAME,
        BAD_STATION_DOT,
        BAD_DOT,
        BAD_ASSIGN,
        BAD_BANG,
        BAD_AMP,
        BAD_PIPE,
} bad_kind;

typedef struct tok {
        uint8_t kind;
        uint8_t bad;
        uint32_t off;
        uint32_t len;
        uint32_t name_off;   /* T_STATION: the attribute; T_BAD/BAD_NAME: the bad name */
        uint32_t name_len;
        double num;
        int64_t ms;
} tok;

static bool is_digit(char c) {
        return c >= '0' && c <= '9';
}

static bool is_word(char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || is_digit(c) || c == '_';
}

static bool is_space(char c) {
        return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static size_t scan_word(const char *s, size_t len, size_t i) {
        while (i < len && is_word(s[i]))
                i++;
        return i;
}

static void lex_number(const char *s, size_t len, size_t i, tok *t) {
        size_t start = i, num_end, end;
        bool integer = true;
        char buf[NUMBER_TEXT_MAX];
        char *e;

        while (i < len && is_digit(s[i]))
                i++;
        if (i < len && s[i] == '.') {
                integer = false;
                i++;
                while (i < len && is_digit(s[i]))
                        i++;
        }
        if (i < len && (s[i] == 'e' || s[i] == 'E')) {
                size_t j = i + 1;
                if (j < len && (s[j] == '+' || s[j] == '-'))
                        j++;
                if (j < len && is_digit(s[j])) {
                        integer = false;
                        while (j < len && is_digit(s[j]))
                                j++;
                        i = j;
                }
        }
        num_end = i;
        end = scan_word(s, len, i);
        t->off = (uint32_t) start;
        t->len = (uint32_t) (end - start);

        if (end > num_end) {
                bool unit = end - num_end == 1 && strchr("smhd", s[num_end]);

                t->kind = T_BAD;
                if (unit && !integer) {
                        t->bad = BAD_FRACTIONAL_WINDOW;
                } else if (unit) {
                        if (fh_duration_parse(s + start, end - start, &t->ms) < 0) {
                                t->bad = BAD_WINDOW_RANGE;
                        } else {
                                t->kind = T_DUR;
                        }
                } else {
                        t->bad = BAD_NUMBER;
                }
                return;
        }

        if (num_end - start >= sizeof(buf)) {
                t->kind = T_BAD;
                t->bad = BAD_NUMBER_RANGE;
                return;
        }
        memcpy(buf, s + start, num_end - start);
        buf[num_end - start] = 0;
        t->num = strtod(buf, &e);
        if (*e != 0 || !isfinite(t->num)) {
                t->kind = T_BAD;
                t->bad = BAD_NUMBER_RANGE;
                return;
        }
        t->kind = T_NUM;
}

static void lex_word(const char *s, size_t len, size_t i, tok *t) {
        size_t end = scan_word(s, len, i);
        size_t n = end - i;

        t->off = (uint32_t) i;
        t->len = (uint32_t) n;
        if (!fh_is_identifier(s + i, n)) {
                t->kind = T_BAD;
                t->bad = BAD_NAME;
                t->name_off = t->off;
                t->name_len = t->len;
                return;
        }
        if (n == 3 && memcmp(s + i, "and", 3) == 0) {
                t->kind = T_AND;
        } else if (n == 2 && memcmp(s + i, "or", 2) == 0) {
                t->kind = T_OR;
        } else if (n == 3 && memcmp(s + i, "not", 3) == 0) {
                t->kind = T_NOT;
        } else if (n == 7 && memcmp(s + i, "station", 7) == 0 && end < len && s[end] == '.') {
                size_t a = end + 1, aend = scan_word(s, len, a);

                t->len = (uint32_t) (aend - i);
                t->name_off = (uint32_t) a;
                t->name_len = (uint32_t) (aend - a);
                if (aend == a) {
                        t->kind = T_BAD;
                        t->bad = BAD_STATION_DOT;
                } else if (!fh_is_identifier(s + a, aend - a)) {
                        t->kind = T_BAD;
                        t->bad = BAD_NAME;
                } else {
                        t->kind = T_STATION;
                }
        } else {
                t->kind = T_IDENT;
        }
}

/* Lexes everything up front into `toks` (room for len + 1). The first
 * lexical error becomes a T_BAD token that ends the list: the parser
 * reports it when it gets there, so errors still come in text order. */
static void lex(const char *s, size_t len, tok *toks) {
        size_t i = 0, n = 0;

        for (;;) {
                tok *t = &toks[n++];
                char c;

                *t = (tok) { 0 };
                while (i < len && is_space(s[i]))
                        i++;
                t->off = (uint32_t) i;
                t->len = 1;
                if (i >= len) {
                        t->kind = T_END;
                        t->len = 0;
                        return;
                }
                c = s[i];
                if (is_digit(c) || (c == '.' && i + 1 < len && is_digit(s[i + 1]))) {
                        lex_number(s, len, i, t);
                } else if (is_word(c)) {
                        lex_word(s, len, i, t);
                } else {
                        char d = i + 1 < len ? s[i + 1] : 0;

                        switch (c) {
                        case '(': t->kind = T_LPAREN; break;
                        case ')': t->kind = T_RPAREN; break;
                        case ',': t->kind = T_COMMA; break;
                        case '+': t->kind = T_PLUS; break;
                        case '-': t->kind = T_MINUS; break;
                        case '*': t->kind = T_STAR; break;
                        case '/': t->kind = T_SLASH; break;
                        case '<':
                                t->kind = d == '=' ? T_LE : T_LT;
                                break;
                        case '>':
                                t->kind = d == '=' ? T_GE : T_GT;
                                break;
                        case '=':
                                if (d == '=') {
                                        t->kind = T_EQ;
                                } else {
                                        t->kind = T_BAD;
                                        t->bad = BAD_ASSIGN;
                                }
                                break;
                        case '!':
                                if (d == '=') {
                                        t->kind = T_NE;
                                } else {
                                        t->kind = T_BAD;
                                        t->bad = BAD_BANG;
                                }
                                break;
                        case '&': t->kind = T_BAD; t->bad = BAD_AMP; break;
                        case '|': t->kind = T_BAD; t->bad = BAD_PIPE; break;
                        case '.': t->kind = T_BAD; t->bad = BAD_DOT; break;
                        default:
                                t->kind = T_BAD;
                                t->bad = BAD_CHAR;
                                break;
                        }
                        if (t->kind == T_LE || t->kind == T_GE || t->kind == T_EQ || t->kind == T_NE)
                                t->len = 2;
                }
                if (t->kind == T_BAD)
                        return;
                i = t->off + t->len;
        }
}

static const char *tok_text(tok_kind k) {
        switch (k) {
        case T_AND: return "and";
        case T_OR: return "or";
        case T_NOT: return "not";
        case T_LPAREN: return "(";
        case T_RPAREN: return ")";
        case T_COMMA: return ",";
        case T_PLUS: return "+";
        case T_MINUS: return "-";
        case T_STAR: return "*";
        case T_SLASH: return "/";
        case T_LT: return "<";
        case T_LE: return "<=";
        case T_GT: return ">";
        case T_GE: return ">=";
        case T_EQ: return "==";
        case T_NE: return "!=";
        default: return NULL;
        }
}

/* ---- parser ------------------------------------------------------------ */

typedef enum ty { TY_NUM, TY_BOOL, TY_ERR } ty;

#define OP_ERR FH_OP__MAX  /* a node that already failed; its type is TY_ERR */

typedef struct node {
        uint8_t op;
        uint8_t type;
        int16_t a, b;
        uint32_t off;        /* the token that names the node */
        uint32_t start;      /* leftmost character of the subexpression */
        uint32_t name_off;   /* field or attribute */
        uint32_t name_len;
        double k;
        int64_t ms;
} node;

typedef struct parser {
        const char *src;
        size_t len;
        const fh_srcpos *pos;
        fh_diags *diags;
        tok *toks;
        size_t i;
        node nodes[EXPR_NODES_MAX];
        size_t n_nodes;
        unsigned depth;
        unsigned n_errors;
} parser;

#define FAIL (-1)

static void where(const parser *p, size_t off, unsigned *line, unsigned *col) {
        unsigned l = p->pos->line;
        size_t line_start = 0;

        if (off > p->len)
                off = p->len;
        /* The text may be a YAML literal block: each newline in it is a
         * new line of the file, at the same indentation as the first. */
        for (size_t i = 0; i < off; i++)
                if (p->src[i] == '\n') {
                        l++;
                        line_start = i + 1;
                }
        *line = l;
        *col = p->pos->col + (unsigned) (off - line_start);
}

__attribute__((format(printf, 3, 4)))
static void error(parser *p, size_t off, const char *fmt, ...) {
        char msg[512];
        va_list ap;
        unsigned line, col;

        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        where(p, off, &line, &col);
        fh_diags_error(p->diags, p->pos->file, line, col, "%s", msg);
        p->n_errors++;
}

static const tok *peek(const parser *p) {
        return &p->toks[p->i];
}

static const tok *peek2(const parser *p) {
        const tok *t = &p->toks[p->i];
        return t->kind == T_END || t->kind == T_BAD ? t : t + 1;
}

static const tok *next(parser *p) {
        const tok *t = &p->toks[p->i];
        if (t->kind != T_END && t->kind != T_BAD)
                p->i++;
        return t;
}

/* Writes a printable rendering of the character at s[0..) for messages. */
static void show_char(const char *s, size_t len, char *buf, size_t n) {
        unsigned char c = (unsigned char) s[0];
        size_t w = c < 0x80 ? 1 : c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc0 ? 2 : 0;
        bool ok = w > 0 && w <= len;

        for (size_t i = 1; ok && i < w; i++)
                ok = ((unsigned char) s[i] & 0xc0) == 0x80;
        if (ok && w == 1 && (c < 0x20 || c == 0x7f))
                ok = false;
        if (ok)
                snprintf(buf, n, "'%.*s'", (int) w, s);
        else
                snprintf(buf, n, "byte 0x%02x", c);
}

static void report_bad(parser *p, const tok *t) {
        const char *s = p->src + t->off;
        int n = (int) FH_MIN(t->len, 40u);

        switch ((bad_kind) t->bad) {
        case BAD_CHAR: {
                char ch[16];
                show_char(s, p->len - t->off, ch, sizeof(ch));
                error(p, t->off, "unexpected %s", ch);
                break;
        }
        case BAD_NUMBER:
                error(p, t->off, "'%.*s' is not a number (a window length is a whole number followed by s, m, h or d)",
                      n, s);
                break;
        case BAD_NUMBER_RANGE:
                error(p, t->off, "number '%.*s%s' is out of range", n, s, t->len > 40 ? "..." : "");
                break;
        case BAD_FRACTIONAL_WINDOW:
                error(p, t->off, "window length '%.*s' must be a whole number, like 90m", n, s);
                break;
        case BAD_WINDOW_RANGE:
                error(p, t->off, "window length '%.*s' is too long", n, s);
                break;
        case BAD_NAME:
                error(p, t->name_off, "'%.*s%s' is not a valid name (use lowercase letters, digits and '_', starting with a letter)",
                      (int) FH_MIN(t->name_len, 40u), p->src + t->name_off, t->name_len > 40 ? "..." : "");
                break;
        case BAD_STATION_DOT:
                error(p, t->off, "expected an attribute name after 'station.'");
                break;
        case BAD_DOT:
                error(p, t->off, "unexpected '.' (only 'station.<attribute>' has a dot)");
                break;
        case BAD_ASSIGN:
                error(p, t->off, "unexpected '=' (did you mean '=='?)");
                break;
        case BAD_BANG:
                error(p, t->off, "unexpected '!' (use 'not', or '!=' for not equal)");
                break;
        case BAD_AMP:
                error(p, t->off, "unexpected '&' (use 'and')");
                break;
        case BAD_PIPE:
                error(p, t->off, "unexpected '|' (use 'or')");
                break;
        }
}

/* Reports what the parser did not expect at t; `want` says what it did. */
static void unexpected(parser *p, const tok *t, const char *want) {
        const char *txt = tok_text(t->kind);

        if (t->kind == T_BAD)
                report_bad(p, t);
        else if (t->kind == T_END)
                error(p, t->off, "expected %s, got the end of the expression", want);
        else if (txt)
                error(p, t->off, "expected %s, got '%s'", want, txt);
        else
                error(p, t->off, "expected %s, got '%.*s'", want, (int) FH_MIN(t->len, 40u), p->src + t->off);
}

static int new_node(parser *p, uint8_t op, ty type, uint32_t off, uint32_t start) {
        node *n;

        if (p->n_nodes >= EXPR_NODES_MAX) {
                error(p, off, "expression too complex (more than %d parts)", EXPR_NODES_MAX);
                return FAIL;
        }
        n = &p->nodes[p->n_nodes];
        *n = (node) { .op = op, .type = (uint8_t) type, .a = -1, .b = -1, .off = off, .start = start };
        return (int) p->n_nodes++;
}

static bool enter(parser *p, const tok *t) {
        if (++p->depth > EXPR_DEPTH_MAX) {
                error(p, t->off, "expression too complex (nested more than %d deep)", EXPR_DEPTH_MAX);
                return false;
        }
        return true;
}

static const char *ty_name(ty t) {
        return t == TY_BOOL ? "true/false" : "a number";
}

/* Checks an operand's type; errors point at the operand. A TY_ERR operand
 * was reported already. */
static void want_operand(parser *p, int idx, ty want, const char *op, bool unary) {
        const node *n = &p->nodes[idx];

        if (n->type == TY_ERR || n->type == want)
                return;
        if (want == TY_BOOL)
                error(p, n->start, "'%s' needs %s, got %s", op,
                      unary ? "a true/false operand" : "true/false operands", ty_name(n->type));
        else
                error(p, n->start, "'%s' needs %s, got %s", op,
                      unary ? "a number operand" : "number operands", ty_name(n->type));
}

static int binary(parser *p, const tok *t, int a, int b) {
        uint8_t op;
        ty operand, result;
        int idx;

        switch (t->kind) {
        case T_OR:    op = FH_OP_OR;  operand = TY_BOOL; result = TY_BOOL; break;
        case T_AND:   op = FH_OP_AND; operand = TY_BOOL; result = TY_BOOL; break;
        case T_LT:    op = FH_OP_LT;  operand = TY_NUM;  result = TY_BOOL; break;
        case T_LE:    op = FH_OP_LE;  operand = TY_NUM;  result = TY_BOOL; break;
        case T_GT:    op = FH_OP_GT;  operand = TY_NUM;  result = TY_BOOL; break;
        case T_GE:    op = FH_OP_GE;  operand = TY_NUM;  result = TY_BOOL; break;
        case T_EQ:    op = FH_OP_EQ;  operand = TY_NUM;  result = TY_BOOL; break;
        case T_NE:    op = FH_OP_NE;  operand = TY_NUM;  result = TY_BOOL; break;
        case T_PLUS:  op = FH_OP_ADD; operand = TY_NUM;  result = TY_NUM;  break;
        case T_MINUS: op = FH_OP_SUB; operand = TY_NUM;  result = TY_NUM;  break;
        case T_STAR:  op = FH_OP_MUL; operand = TY_NUM;  result = TY_NUM;  break;
        default:      op = FH_OP_DIV; operand = TY_NUM;  result = TY_NUM;  break;
        }
        want_operand(p, a, operand, tok_text(t->kind), false);
        want_operand(p, b, operand, tok_text(t->kind), false);
        idx = new_node(p, op, result, t->off, p->nodes[a].start);
        if (idx == FAIL)
                return FAIL;
        p->nodes[idx].a = (int16_t) a;
        p->nodes[idx].b = (int16_t) b;
        return idx;
}

static int parse_or(parser *p);

typedef enum arg_kind { ARG_FIELD, ARG_WINDOW, ARG_KEYWORD, ARG_EXPR } arg_kind;

typedef struct arg {
        arg_kind kind;
        const tok *t;
        int node;     /* ARG_EXPR */
} arg;

typedef enum fn_shape { SH_FIELD, SH_WINDOW, SH_NONE, SH_MATH } fn_shape;

static const struct fn {
        const char *name;
        uint8_t op;
        uint8_t shape;
} fns[] = {
        { "last",     FH_OP_LAST,     SH_FIELD },
        { "sum",      FH_OP_SUM,      SH_WINDOW },
        { "avg",      FH_OP_AVG,      SH_WINDOW },
        { "min",      FH_OP_MIN,      SH_WINDOW },
        { "max",      FH_OP_MAX,      SH_WINDOW },
        { "count",    FH_OP_COUNT,    SH_WINDOW },
        { "delta",    FH_OP_DELTA,    SH_WINDOW },
        { "rate",     FH_OP_RATE,     SH_WINDOW },
        { "age",      FH_OP_AGE,      SH_NONE },
        { "abs",      FH_OP_ABS,      SH_MATH },
        { "sqrt",     FH_OP_SQRT,     SH_MATH },
        { "atan_deg", FH_OP_ATAN_DEG, SH_MATH },
};

static const struct fn *find_fn(const char *s, size_t n) {
        for (size_t i = 0; i < FH_ARRAY_SIZE(fns); i++)
                if (strlen(fns[i].name) == n && memcmp(fns[i].name, s, n) == 0)
                        return &fns[i];
        return NULL;
}

static bool check_field_name(parser *p, const tok *t) {
        if (t->len > FH_FIELD_NAME_MAX) {
                error(p, t->off, "field name '%.*s...' is longer than %d characters",
                      20, p->src + t->off, FH_FIELD_NAME_MAX);
                return false;
        }
        return true;
}

static int field_node(parser *p, uint8_t op, const tok *name, uint32_t off, uint32_t start) {
        int idx;
        bool ok = check_field_name(p, name);

        idx = new_node(p, ok ? op : OP_ERR, ok ? TY_NUM : TY_ERR, off, start);
        if (idx == FAIL)
                return FAIL;
        p->nodes[idx].name_off = name->off;
        p->nodes[idx].name_len = name->len;
        return idx;
}

static void duration_misplaced(parser *p, const tok *t) {
        error(p, t->off, "a duration like '%.*s' is only allowed as a window length",
              (int) FH_MIN(t->len, 40u), p->src + t->off);
}

static int finish_call(parser *p, const tok *name, const arg *args, size_t n_args) {
        const char *fname = p->src + name->off;
        int fl = (int) name->len;
        const struct fn *f = find_fn(fname, name->len);
        int idx;

        if (!f) {
                const char *best = NULL;
                size_t best_d = 3;

                for (size_t i = 0; i < FH_ARRAY_SIZE(fns); i++) {
                        size_t d = fh_edit_distance(fname, name->len, fns[i].name, strlen(fns[i].name));
                        if (d < best_d) {
                                best_d = d;
                                best = fns[i].name;
                        }
                }
                if (best)
                        error(p, name->off, "unknown function '%.*s' (did you mean '%s'?)", fl, fname, best);
                else
                        error(p, name->off, "unknown function '%.*s'", FH_MIN(fl, 40), fname);
                return new_node(p, OP_ERR, TY_ERR, name->off, name->off);
        }

        switch ((fn_shape) f->shape) {
        case SH_NONE:
                if (n_args != 0) {
                        error(p, name->off, "'%s' takes no arguments: write %s()", f->name, f->name);
                        return new_node(p, OP_ERR, TY_ERR, name->off, name->off);
                }
                return new_node(p, f->op, TY_NUM, name->off, name->off);

        case SH_MATH:
                if (n_args != 1) {
                        error(p, name->off, "'%s' takes one number, like %s(x), got %zu arguments",
                              f->name, f->name, n_args);
                        return new_node(p, OP_ERR, TY_ERR, name->off, name->off);
                }
                if (args[0].kind == ARG_WINDOW) {
                        duration_misplaced(p, args[0].t);
                        return new_node(p, OP_ERR, TY_ERR, name->off, name->off);
                }
                if (args[0].kind == ARG_KEYWORD) {
                        error(p, args[0].t->off, "expected a value, got '%s'", tok_text(args[0].t->kind));
                        return new_node(p, OP_ERR, TY_ERR, name->off, name->off);
                }
                if (args[0].kind == ARG_FIELD) {
                        int a = field_node(p, FH_OP_LAST, args[0].t, args[0].t->off, args[0].t->off);
                        if (a == FAIL)
                                return FAIL;
                        idx = new_node(p, f->op, TY_NUM, name->off, name->off);
                        if (idx != FAIL)
                                p->nodes[idx].a = (int16_t) a;
                        return idx;
                }
                if (p->nodes[args[0].node].type == TY_BOOL)
                        error(p, p->nodes[args[0].node].start, "'%s' needs a number, got true/false", f->name);
                idx = new_node(p, f->op, TY_NUM, name->off, name->off);
                if (idx != FAIL)
                        p->nodes[idx].a = (int16_t) args[0].node;
                return idx;

        case SH_FIELD:
        case SH_WINDOW: {
                bool window = f->shape == SH_WINDOW;
                bool ok = true;

                if (n_args != (window ? 2u : 1u)) {
                        if (window)
                                error(p, name->off, "'%s' takes a field and a window length, like %s(rain_mm, 3h)",
                                      f->name, f->name);
                        else
                                error(p, name->off, "'%s' takes one field name, like %s(rain_mm)", f->name, f->name);
                        return new_node(p, OP_ERR, TY_ERR, name->off, name->off);
                }
                if (args[0].kind == ARG_KEYWORD) {
                        error(p, args[0].t->off, "'%s' is a keyword, not a field name", tok_text(args[0].t->kind));
                        ok = false;
                } else if (args[0].kind != ARG_FIELD) {
                        const tok *t = args[0].t;
                        uint32_t off = args[0].kind == ARG_EXPR ? p->nodes[args[0].node].start : t->off;
                        error(p, off, "the first argument of '%s' must be a field name, like rain_mm", f->name);
                        ok = false;
                } else if (!check_field_name(p, args[0].t)) {
                        ok = false;
                }
                if (window) {
                        if (args[1].kind != ARG_WINDOW) {
                                uint32_t off = args[1].kind == ARG_EXPR ? p->nodes[args[1].node].start
                                                                        : args[1].t->off;
                                error(p, off, "the second argument of '%s' must be a window length, like 3h",
                                      f->name);
                                ok = false;
                        } else if (args[1].t->ms <= 0) {
                                error(p, args[1].t->off, "window length must be positive");
                                ok = false;
                        }
                }
                if (!ok)
                        return new_node(p, OP_ERR, TY_ERR, name->off, name->off);
                idx = new_node(p, f->op, TY_NUM, name->off, name->off);
                if (idx == FAIL)
                        return FAIL;
                p->nodes[idx].name_off = args[0].t->off;
                p->nodes[idx].name_len = args[0].t->len;
                p->nodes[idx].ms = window ? args[1].t->ms : 0;
                return idx;
        }
        }
        return FAIL;
}

static int parse_call(parser *p) {
        const tok *name = next(p);
        const tok *open = next(p);
        arg args[ARGS_MAX];
        size_t n_args = 0;
        int idx;

        if (!enter(p, open))
                return FAIL;
        if (peek(p)->kind != T_RPAREN) {
                for (;;) {
                        const tok *t = peek(p), *t2 = peek2(p);
                        arg a = { .kind = ARG_EXPR, .t = t, .node = -1 };
                        bool simple = t2->kind == T_COMMA || t2->kind == T_RPAREN;

                        if (simple && t->kind == T_IDENT) {
                                a.kind = ARG_FIELD;
                                next(p);
                        } else if (simple && t->kind == T_DUR) {
                                a.kind = ARG_WINDOW;
                                next(p);
                        } else if (simple && (t->kind == T_AND || t->kind == T_OR || t->kind == T_NOT)) {
                                a.kind = ARG_KEYWORD;
                                next(p);
                        } else {
                                a.node = parse_or(p);
                                if (a.node == FAIL)
                                        return FAIL;
                        }
                        if (n_args < ARGS_MAX)
                                args[n_args] = a;
                        n_args++;
                        t = peek(p);
                        if (t->kind == T_COMMA) {
                                next(p);
                                continue;
                        }
                        if (t->kind == T_RPAREN)
                                break;
                        unexpected(p, t, "',' or ')'");
                        return FAIL;
                }
        }
        next(p);
        p->depth--;
        idx = finish_call(p, name, args, FH_MIN(n_args, (size_t) ARGS_MAX));
        /* More arguments than any function takes: finish_call saw only the
         * first few, which is still enough to say the count is wrong. */
        return idx;
}

static int parse_primary(parser *p) {
        const tok *t = peek(p);
        int idx;

        switch (t->kind) {
        case T_NUM:
                next(p);
                idx = new_node(p, FH_OP_CONST, TY_NUM, t->off, t->off);
                if (idx != FAIL)
                        p->nodes[idx].k = t->num;
                return idx;
        case T_DUR:
                next(p);
                duration_misplaced(p, t);
                return new_node(p, OP_ERR, TY_ERR, t->off, t->off);
        case T_STATION:
                next(p);
                if (t->name_len > ATTR_NAME_MAX) {
                        error(p, t->name_off, "attribute name is longer than %d characters", ATTR_NAME_MAX);
                        return new_node(p, OP_ERR, TY_ERR, t->off, t->off);
                }
                idx = new_node(p, FH_OP_STATION, TY_NUM, t->off, t->off);
                if (idx != FAIL) {
                        p->nodes[idx].name_off = t->name_off;
                        p->nodes[idx].name_len = t->name_len;
                }
                return idx;
        case T_IDENT:
                if (peek2(p)->kind == T_LPAREN)
                        return parse_call(p);
                next(p);
                return field_node(p, FH_OP_LAST, t, t->off, t->off);
        case T_LPAREN:
                if (!enter(p, t))
                        return FAIL;
                next(p);
                idx = parse_or(p);
                if (idx == FAIL)
                        return FAIL;
                if (peek(p)->kind != T_RPAREN) {
                        unsigned line, col;
                        char want[64];

                        where(p, t->off, &line, &col);
                        snprintf(want, sizeof(want), "')' to close the '(' at column %u", col);
                        unexpected(p, peek(p), want);
                        return FAIL;
                }
                next(p);
                p->depth--;
                /* Parentheses are not a node, but the subexpression now
                 * starts at '(' for messages about it. */
                p->nodes[idx].start = t->off;
                return idx;
        default:
                if (t->kind == T_END && p->i == 0)
                        error(p, 0, "empty expression");
                else
                        unexpected(p, t, "a value");
                return FAIL;
        }
}

static int parse_unary(parser *p) {
        const tok *t = peek(p);
        int a, idx;

        if (t->kind != T_MINUS)
                return parse_primary(p);
        if (!enter(p, t))
                return FAIL;
        next(p);
        a = parse_unary(p);
        if (a == FAIL)
                return FAIL;
        p->depth--;
        if (p->nodes[a].op == FH_OP_CONST) {
                p->nodes[a].k = -p->nodes[a].k;
                p->nodes[a].start = t->off;
                return a;
        }
        want_operand(p, a, TY_NUM, "-", true);
        idx = new_node(p, FH_OP_NEG, TY_NUM, t->off, t->off);
        if (idx != FAIL)
                p->nodes[idx].a = (int16_t) a;
        return idx;
}

static int parse_mul(parser *p) {
        int l = parse_unary(p);

        while (l != FAIL && (peek(p)->kind == T_STAR || peek(p)->kind == T_SLASH)) {
                const tok *op = next(p);
                int r = parse_unary(p);
                if (r == FAIL)
                        return FAIL;
                l = binary(p, op, l, r);
        }
        return l;
}

static int parse_add(parser *p) {
        int l = parse_mul(p);

        while (l != FAIL && (peek(p)->kind == T_PLUS || peek(p)->kind == T_MINUS)) {
                const tok *op = next(p);
                int r = parse_mul(p);
                if (r == FAIL)
                        return FAIL;
                l = binary(p, op, l, r);
        }
        return l;
}

static bool is_cmp(tok_kind k) {
        return k == T_LT || k == T_LE || k == T_GT || k == T_GE || k == T_EQ || k == T_NE;
}

static int parse_cmp(parser *p) {
        const tok *op;
        int l = parse_add(p), r;

        if (l == FAIL || !is_cmp(peek(p)->kind))
                return l;
        op = next(p);
        r = parse_add(p);
        if (r == FAIL)
                return FAIL;
        if (is_cmp(peek(p)->kind)) {
                error(p, peek(p)->off, "comparisons cannot be chained: write 'a < b and b < c'");
                return FAIL;
        }
        return binary(p, op, l, r);
}

static int parse_not(parser *p) {
        const tok *t = peek(p);
        int a, idx;

        if (t->kind != T_NOT)
                return parse_cmp(p);
        if (!enter(p, t))
                return FAIL;
        next(p);
        a = parse_not(p);
        if (a == FAIL)
                return FAIL;
        p->depth--;
        want_operand(p, a, TY_BOOL, "not", true);
        idx = new_node(p, FH_OP_NOT, TY_BOOL, t->off, t->off);
        if (idx != FAIL)
                p->nodes[idx].a = (int16_t) a;
        return idx;
}

static int parse_and(parser *p) {
        int l = parse_not(p);

        while (l != FAIL && peek(p)->kind == T_AND) {
                const tok *op = next(p);
                int r = parse_not(p);
                if (r == FAIL)
                        return FAIL;
                l = binary(p, op, l, r);
        }
        return l;
}

static int parse_or(parser *p) {
        int l = parse_and(p);

        while (l != FAIL && peek(p)->kind == T_OR) {
                const tok *op = next(p);
                int r = parse_and(p);
                if (r == FAIL)
                        return FAIL;
                l = binary(p, op, l, r);
        }
        return l;
}

/* ---- code generation --------------------------------------------------- */

static unsigned stack_need(const parser *p, int idx) {
        const node *n = &p->nodes[idx];

        if (n->b >= 0) {
                unsigned a = stack_need(p, n->a), b = stack_need(p, n->b) + 1;
                return a > b ? a : b;
        }
        if (n->a >= 0)
                return stack_need(p, n->a);
        return 1;
}

typedef struct emitter {
        parser *p;
        fh_symbols *syms;
        fh_insn *code;
        uint32_t n;
        bool uses_age;
        fh_field_ref *refs;
        uint32_t n_refs;
} emitter;

static int emit(emitter *e, int idx) {
        const node *n = &e->p->nodes[idx];
        const char *name = e->p->src + n->name_off;
        fh_insn in = { .op = n->op };
        size_t i, w;
        int r;

        if (n->a >= 0 && (r = emit(e, n->a)) < 0)
                return r;
        if (n->b >= 0 && (r = emit(e, n->b)) < 0)
                return r;

        switch (n->op) {
        case FH_OP_CONST:
                in.k = n->k;
                break;
        case FH_OP_STATION:
                if (intern_name(&e->syms->attrs, &e->syms->n_attrs, ATTRS_MAX, name, n->name_len, &i) < 0) {
                        error(e->p, n->off, "too many different station attributes in all rules (more than %d)",
                              ATTRS_MAX);
                        return -E2BIG;
                }
                in.arg = (uint32_t) i;
                break;
        case FH_OP_AGE:
                e->uses_age = true;
                break;
        case FH_OP_LAST:
        case FH_OP_SUM:
        case FH_OP_AVG:
        case FH_OP_MIN:
        case FH_OP_MAX:
        case FH_OP_COUNT:
        case FH_OP_DELTA:
        case FH_OP_RATE:
                if (intern_name(&e->syms->fields, &e->syms->n_fields, FIELDS_MAX, name, n->name_len, &i) < 0) {
                        error(e->p, n->name_off, "too many different field names in all rules (more than %d)",
                              FIELDS_MAX);
                        return -E2BIG;
                }
                in.field = (uint16_t) i;
                {
                        /* At most one per node: the node array bounds it. */
                        fh_field_ref *ref = &e->refs[e->n_refs++];
                        ref->field = in.field;
                        where(e->p, n->name_off, &ref->line, &ref->col);
                }
                if (n->op != FH_OP_LAST) {
                        if (intern_window(e->syms, in.field, n->ms, &w) < 0) {
                                error(e->p, n->off, "too many different windows in all rules (more than %d)",
                                      WINDOWS_MAX);
                                return -E2BIG;
                        }
                        in.arg = (uint32_t) w;
                }
                break;
        default:
                break;
        }
        e->code[e->n++] = in;
        return 0;
}

int fh_expr_compile(const char *src, size_t len, fh_type want, const fh_srcpos *pos,
                    fh_symbols *syms, fh_program **ret, fh_diags *diags) {
        parser *p;
        tok *toks = NULL;
        emitter e = { 0 };
        fh_program *prog;
        ty want_ty = want == FH_TYPE_BOOL ? TY_BOOL : TY_NUM;
        int root, r = -EINVAL;

        p = fh_calloc(1, sizeof(*p));
        p->src = src;
        p->len = len;
        p->pos = pos;
        p->diags = diags;

        if (len > EXPR_LEN_MAX) {
                error(p, 0, "expression too long (more than %d bytes)", EXPR_LEN_MAX);
                goto out;
        }
        toks = fh_malloc((len + 1) * sizeof(*toks));
        lex(src, len, toks);
        p->toks = toks;

        root = parse_or(p);
        if (root == FAIL)
                goto out;
        if (peek(p)->kind != T_END) {
                const tok *t = peek(p);
                if (t->kind == T_RPAREN)
                        error(p, t->off, "unmatched ')'");
                else
                        unexpected(p, t, "an operator or the end of the expression");
                goto out;
        }
        if (p->nodes[root].type != TY_ERR && p->nodes[root].type != want_ty) {
                if (want == FH_TYPE_BOOL)
                        error(p, p->nodes[root].start,
                              "a level condition must be true/false (a comparison), got a number");
                else
                        error(p, p->nodes[root].start, "a report must be a number, got true/false");
        }
        if (p->n_errors > 0)
                goto out;
        if (stack_need(p, root) > EXPR_STACK_MAX) {
                error(p, 0, "expression too complex (needs more than %d intermediate values)", EXPR_STACK_MAX);
                goto out;
        }

        e.p = p;
        e.syms = syms;
        e.code = fh_calloc(p->n_nodes, sizeof(*e.code));
        e.refs = fh_calloc(p->n_nodes, sizeof(*e.refs));
        if (emit(&e, root) < 0) {
                free(e.code);
                free(e.refs);
                goto out;
        }

        prog = fh_calloc(1, sizeof(*prog));
        prog->code = e.code;
        prog->n = e.n;
        prog->max_stack = stack_need(p, root);
        prog->type = want;
        prog->uses_age = e.uses_age;
        prog->source = fh_strndup(src, len);
        prog->refs = e.refs;
        prog->n_refs = e.n_refs;
        *ret = prog;
        r = 0;
out:
        free(toks);
        free(p);
        return r;
}

fh_program *fh_program_free(fh_program *p) {
        if (p) {
                free(p->code);
                free(p->source);
                free(p->refs);
                free(p);
        }
        return NULL;
}

/* ---- evaluation -------------------------------------------------------- */

static double b2d(bool b) {
        return b ? 1.0 : 0.0;
}

static unsigned op_arity(fh_opcode op) {
        switch (op) {
        case FH_OP_CONST: case FH_OP_STATION: case FH_OP_AGE: case FH_OP_LAST: case FH_OP_SUM:
        case FH_OP_AVG: case FH_OP_MIN: case FH_OP_MAX: case FH_OP_COUNT: case FH_OP_DELTA: case FH_OP_RATE:
                return 0;
        case FH_OP_NEG: case FH_OP_ABS: case FH_OP_SQRT: case FH_OP_ATAN_DEG: case FH_OP_NOT:
                return 1;
        default:
                return 2;
        }
}

size_t fh_program_compares(const fh_program *p, fh_compare *out, size_t max) {
        /* Postfix code: each value on the stack is the result of a
         * contiguous run of instructions, so tracking where each run starts
         * finds both operands of every binary operator. */
        uint32_t start[EXPR_STACK_MAX];
        unsigned sp = 0;
        size_t n = 0;

        if (!p || p->max_stack > EXPR_STACK_MAX)
                return 0;
        for (uint32_t i = 0; i < p->n; i++) {
                fh_opcode op = (fh_opcode) p->code[i].op;
                unsigned a = op_arity(op);
                if (a > sp)
                        return n;
                uint32_t s = a ? start[sp - a] : i;
                if (a == 2 && op >= FH_OP_LT && op <= FH_OP_NE) {
                        uint32_t r = start[sp - 1];
                        if (n < max)
                                out[n] = (fh_compare) {
                                        .op = op,
                                        .left = { p->code + s, r - s, p->max_stack, FH_TYPE_NUMBER, p->uses_age, NULL, NULL, 0 },
                                        .right = { p->code + r, i - r, p->max_stack, FH_TYPE_NUMBER, p->uses_age, NULL, NULL, 0 },
                                };
                        n++;
                }
                sp -= a;
                if (sp >= EXPR_STACK_MAX)
                        return n;
                start[sp++] = s;
        }
        return n;
}

bool fh_program_same(const fh_program *a, const fh_program *b) {
        if (!a || !b || a->n != b->n)
                return false;
        for (uint32_t i = 0; i < a->n; i++) {
                const fh_insn *x = &a->code[i], *y = &b->code[i];
                if (x->op != y->op || x->field != y->field || x->arg != y->arg ||
                    memcmp(&x->k, &y->k, sizeof(x->k)) != 0)
                        return false;
        }
        return true;
}

double fh_program_eval(const fh_program *p, const fh_eval_env *env) {
        double st[EXPR_STACK_MAX];
        unsigned sp = 0;

        /* Compilation bounds max_stack; a program from anywhere else that
         * would overrun the stack gets "missing" instead. */
        if (!p || p->max_stack > EXPR_STACK_MAX || p->n == 0)
                return NAN;

        for (uint32_t i = 0; i < p->n; i++) {
                const fh_insn *in = &p->code[i];
                double a, b;

                switch ((fh_opcode) in->op) {
                case FH_OP_CONST:
                        st[sp++] = in->k;
                        continue;
                case FH_OP_STATION:
                        st[sp++] = env->station(env->ctx, in->arg);
                        continue;
                case FH_OP_AGE:
                        st[sp++] = env->age(env->ctx);
                        continue;
                case FH_OP_LAST:
                        st[sp++] = env->field(env->ctx, FH_OP_LAST, in->field, 0);
                        continue;
                case FH_OP_SUM:
                case FH_OP_AVG:
                case FH_OP_MIN:
                case FH_OP_MAX:
                case FH_OP_COUNT:
                case FH_OP_DELTA:
                case FH_OP_RATE:
                        st[sp++] = env->field(env->ctx, (fh_opcode) in->op, in->field, in->arg);
                        continue;
                case FH_OP_NEG:
                        st[sp - 1] = -st[sp - 1];
                        continue;
                case FH_OP_ABS:
                        st[sp - 1] = fabs(st[sp - 1]);
                        continue;
                case FH_OP_SQRT:
                        a = st[sp - 1];
                        st[sp - 1] = a < 0 ? NAN : sqrt(a);
                        continue;
                case FH_OP_ATAN_DEG:
                        st[sp - 1] = atan(st[sp - 1]) * (180.0 / 3.14159265358979323846);
                        continue;
                case FH_OP_NOT:
                        st[sp - 1] = b2d(st[sp - 1] == 0.0);
                        continue;
                default:
                        break;
                }

                b = st[--sp];
                a = st[sp - 1];
                switch ((fh_opcode) in->op) {
                case FH_OP_ADD: a = a + b; break;
                case FH_OP_SUB: a = a - b; break;
                case FH_OP_MUL: a = a * b; break;
                case FH_OP_DIV: a = b == 0.0 ? NAN : a / b; break;
                case FH_OP_LT: a = b2d(a < b); break;
                case FH_OP_LE: a = b2d(a <= b); break;
                case FH_OP_GT: a = b2d(a > b); break;
                case FH_OP_GE: a = b2d(a >= b); break;
                case FH_OP_EQ: a = b2d(a == b); break;
                /* IEEE says NaN != x is true; SPEC says any comparison
                 * with a missing value is false. */
                case FH_OP_NE: a = b2d(!isnan(a) && !isnan(b) && a != b); break;
                case FH_OP_AND: a = b2d(a != 0.0 && b != 0.0); break;
                case FH_OP_OR: a = b2d(a != 0.0 || b != 0.0); break;
                default: return NAN;
                }
                st[sp - 1] = a;
        }
        return sp == 1 ? st[0] : NAN;
}
