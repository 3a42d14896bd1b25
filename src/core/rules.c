/* Rule files (SPEC §3): libyaml's document API gives a node tree with
 * marks; this file walks it against the rule schema and reports every
 * problem with the file, line and byte column a user's editor shows.
 *
 * The walk never recurses beyond the schema's fixed depth (file -> rules ->
 * rule -> match -> values), so YAML aliases, even cyclic ones, cannot make
 * it loop or blow up: the worst they do is repeat a rule, which the
 * duplicate-id check then reports. */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "fenghuo/buf.h"
#include "fenghuo/rules.h"
#include "fenghuo/timeutil.h"

#define RULE_ID_MAX      FH_RULE_ID_MAX
#define TITLE_MAX        512
#define MESSAGE_MAX      4096
#define MATCH_ATTRS_MAX  64
#define MATCH_VALUE_MAX  1024
#define ATTR_NAME_MAX    64
#define FILE_ERRORS_MAX  200
#define SHOW_MAX         40

typedef struct idref {
        const char *id;      /* points into the YAML document */
        unsigned line, col;
        size_t seq;          /* position in the file */
        size_t rule;         /* index into the file's new rules, or SIZE_MAX */
} idref;

typedef struct pctx {
        fh_ruleset *rs;
        const char *file;
        const char *text;
        size_t len;
        size_t *lines;       /* byte offset where each line starts */
        size_t n_lines;
        yaml_document_t doc;
        fh_diags *diags;
        size_t errors0;
        bool stop;

        fh_rule *rules;      /* this file's good rules, added at the end */
        size_t n_rules;
        idref *ids;
        size_t n_ids;
} pctx;

/* Where a scalar's value starts in the file, for columns inside it. */
typedef struct origin {
        unsigned line, col;
        bool exact;          /* false: every position inside is reported at line/col */
} origin;

/* ---- positions --------------------------------------------------------- */

/* libyaml counts a line at each of these, so the table must too. */
static size_t line_break_at(const char *s, size_t len, size_t i) {
        const unsigned char *u = (const unsigned char *) s;

        if (u[i] == '\r')
                return i + 1 < len && u[i + 1] == '\n' ? 2 : 1;
        if (u[i] == '\n')
                return 1;
        if (u[i] == 0xc2 && i + 1 < len && u[i + 1] == 0x85)
                return 2;
        if (u[i] == 0xe2 && i + 2 < len && u[i + 1] == 0x80 && (u[i + 2] == 0xa8 || u[i + 2] == 0xa9))
                return 3;
        return 0;
}

static void build_lines(pctx *c, size_t bom) {
        size_t cap = 64;

        c->lines = fh_malloc(cap * sizeof(*c->lines));
        c->lines[0] = bom;
        c->n_lines = 1;
        for (size_t i = bom; i < c->len;) {
                size_t b = line_break_at(c->text, c->len, i);

                if (!b) {
                        i++;
                        continue;
                }
                i += b;
                if (c->n_lines == cap) {
                        cap *= 2;
                        c->lines = fh_realloc(c->lines, cap * sizeof(*c->lines));
                }
                c->lines[c->n_lines++] = i;
        }
}

static size_t line_end(const pctx *c, size_t l) {
        return l + 1 < c->n_lines ? c->lines[l + 1] : c->len;
}

/* libyaml's columns count characters; SPEC columns count bytes. */
static size_t mark_pos(const pctx *c, const yaml_mark_t *m, unsigned *ret_line, unsigned *ret_col) {
        size_t l = m->line < c->n_lines ? m->line : c->n_lines - 1;
        size_t off = c->lines[l], end = line_end(c, l);

        for (size_t k = 0; k < m->column && off < end; k++) {
                off++;
                while (off < end && ((unsigned char) c->text[off] & 0xc0) == 0x80)
                        off++;
        }
        *ret_line = (unsigned) (l + 1);
        *ret_col = (unsigned) (off - c->lines[l] + 1);
        return off;
}

static void offset_pos(const pctx *c, size_t off, unsigned *ret_line, unsigned *ret_col) {
        size_t lo = 0, hi = c->n_lines;

        /* Last line starting at or before off. */
        while (hi - lo > 1) {
                size_t mid = lo + (hi - lo) / 2;
                if (c->lines[mid] <= off)
                        lo = mid;
                else
                        hi = mid;
        }
        *ret_line = (unsigned) (lo + 1);
        *ret_col = (unsigned) (off >= c->lines[lo] ? off - c->lines[lo] + 1 : 1);
}

static origin scalar_origin(const pctx *c, const yaml_node_t *v) {
        origin o;
        bool one_line = v->start_mark.line == v->end_mark.line;

        mark_pos(c, &v->start_mark, &o.line, &o.col);
        o.exact = one_line;
        switch (v->data.scalar.style) {
        case YAML_SINGLE_QUOTED_SCALAR_STYLE:
        case YAML_DOUBLE_QUOTED_SCALAR_STYLE:
                o.col++;
                break;
        case YAML_LITERAL_SCALAR_STYLE:
        case YAML_FOLDED_SCALAR_STYLE:
                /* The mark is on the '|' or '>'; the text starts on the next
                 * line, at the indentation of its first non-blank line. A
                 * literal block keeps its line breaks, so later lines map
                 * exactly; a folded one joins them, so only the start is
                 * known. */
                o.exact = false;
                for (size_t l = v->start_mark.line + 1; l < c->n_lines; l++) {
                        size_t p = c->lines[l], end = line_end(c, l), q = p;

                        while (q < end && c->text[q] == ' ')
                                q++;
                        if (q < end && !line_break_at(c->text, c->len, q)) {
                                o.line = (unsigned) (v->start_mark.line + 2);
                                o.col = (unsigned) (q - p + 1);
                                o.exact = v->data.scalar.style == YAML_LITERAL_SCALAR_STYLE;
                                break;
                        }
                }
                break;
        default:
                break;
        }
        return o;
}

static void value_pos(const origin *o, const char *s, size_t off, unsigned *ret_line, unsigned *ret_col) {
        unsigned line = o->line;
        size_t start = 0;

        if (!o->exact) {
                *ret_line = o->line;
                *ret_col = o->col;
                return;
        }
        for (size_t i = 0; i < off; i++)
                if (s[i] == '\n') {
                        line++;
                        start = i + 1;
                }
        *ret_line = line;
        *ret_col = o->col + (unsigned) (off - start);
}

/* ---- messages ---------------------------------------------------------- */

static bool too_many(pctx *c) {
        if (c->stop)
                return true;
        if (c->diags->n_errors - c->errors0 >= FILE_ERRORS_MAX) {
                fh_diags_error(c->diags, c->file, 0, 0, "too many errors, giving up on this file");
                c->stop = true;
        }
        return c->stop;
}

__attribute__((format(printf, 4, 5)))
static void err_at(pctx *c, unsigned line, unsigned col, const char *fmt, ...) {
        char msg[512];
        va_list ap;

        if (too_many(c))
                return;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        fh_diags_error(c->diags, c->file, line, col, "%s", msg);
}

__attribute__((format(printf, 3, 4)))
static void err_node(pctx *c, const yaml_node_t *n, const char *fmt, ...) {
        char msg[512];
        unsigned line, col;
        va_list ap;

        if (too_many(c))
                return;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        mark_pos(c, &n->start_mark, &line, &col);
        fh_diags_error(c->diags, c->file, line, col, "%s", msg);
}

/* User text inside a message: bounded, one line, cut at a character. */
typedef struct shown {
        char s[SHOW_MAX * 2 + 8];
} shown;

static shown show(const char *s, size_t n) {
        shown r;
        size_t k = n > SHOW_MAX ? SHOW_MAX : n, o = 0;

        while (k < n && k > 0 && ((unsigned char) s[k] & 0xc0) == 0x80)
                k--;
        for (size_t i = 0; i < k; i++) {
                unsigned char ch = (unsigned char) s[i];
                r.s[o++] = ch < 0x20 || ch == 0x7f ? '?' : (char) ch;
        }
        if (k < n) {
                memcpy(r.s + o, "...", 3);
                o += 3;
        }
        r.s[o] = 0;
        return r;
}

static const char *node_kind(const yaml_node_t *n) {
        switch (n->type) {
        case YAML_SEQUENCE_NODE: return "a list";
        case YAML_MAPPING_NODE: return "a mapping";
        default: return "text";
        }
}


/* The closest of names within two edits, or NULL. */
static const char *suggest(const char *s, size_t n, const char *const *names, size_t n_names) {
        const char *best = NULL;
        size_t best_d = 3;

        for (size_t i = 0; i < n_names; i++) {
                size_t d = fh_edit_distance(s, n, names[i], strlen(names[i]));
                if (d < best_d) {
                        best_d = d;
                        best = names[i];
                }
        }
        return best;
}

/* ---- node access ------------------------------------------------------- */

static yaml_node_t *node(pctx *c, int idx) {
        return yaml_document_get_node(&c->doc, idx);
}

static const char *sval(const yaml_node_t *n) {
        return (const char *) n->data.scalar.value;
}

static size_t slen(const yaml_node_t *n) {
        return n->data.scalar.length;
}

static bool scalar_is(const yaml_node_t *n, const char *s) {
        return n->type == YAML_SCALAR_NODE && slen(n) == strlen(s) && memcmp(sval(n), s, slen(n)) == 0;
}

static bool is_null(const yaml_node_t *n) {
        return n->type == YAML_SCALAR_NODE && n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
               (slen(n) == 0 || scalar_is(n, "~") || scalar_is(n, "null") || scalar_is(n, "Null") || scalar_is(n, "NULL"));
}

/* A scalar as C text: no NUL inside (a "\0" escape would cut it short
 * everywhere downstream) and at most max bytes. */
static bool text_value(pctx *c, const yaml_node_t *v, const char *what, size_t max) {
        if (v->type != YAML_SCALAR_NODE) {
                err_node(c, v, "%s must be text, got %s", what, node_kind(v));
                return false;
        }
        if (memchr(sval(v), 0, slen(v))) {
                err_node(c, v, "%s contains a NUL character", what);
                return false;
        }
        if (slen(v) > max) {
                err_node(c, v, "%s is longer than %zu bytes", what, max);
                return false;
        }
        return true;
}

/* ---- freeing ----------------------------------------------------------- */

static void template_free(fh_template *t) {
        if (!t)
                return;
        for (size_t i = 0; i < t->n_parts; i++)
                free(t->parts[i].text);
        free(t->parts);
        free(t);
}

static void rule_clear(fh_rule *r) {
        free(r->id);
        free(r->title);
        for (size_t i = 0; i < r->n_match; i++) {
                for (size_t j = 0; j < r->match[i].n_values; j++)
                        free(r->match[i].values[j].str);
                free(r->match[i].values);
                free(r->match[i].attr);
        }
        free(r->match);
        for (size_t l = 0; l < FH_LEVEL__MAX; l++)
                fh_program_free(r->levels[l]);
        fh_program_free(r->report);
        template_free(r->message);
        free(r->unit);
        free(r->file);
        *r = (fh_rule) { 0 };
}

/* ---- the pieces of a rule ---------------------------------------------- */

static void parse_id(pctx *c, fh_rule *r, const yaml_node_t *v, size_t seq) {
        if (!text_value(c, v, "'id'", SIZE_MAX))
                return;
        if (slen(v) > RULE_ID_MAX) {
                err_node(c, v, "rule id '%s' is longer than %d characters", show(sval(v), slen(v)).s, RULE_ID_MAX);
                return;
        }
        if (!fh_is_identifier(sval(v), slen(v))) {
                err_node(c, v, "rule id '%s' is not valid: use lowercase letters, digits and '_', starting with a letter",
                         show(sval(v), slen(v)).s);
                return;
        }
        r->id = fh_strndup(sval(v), slen(v));
        mark_pos(c, &v->start_mark, &r->line, &r->col);
        if ((c->n_ids & (c->n_ids - 1)) == 0)
                c->ids = fh_realloc(c->ids, (c->n_ids ? 2 * c->n_ids : 1) * sizeof(*c->ids));
        c->ids[c->n_ids++] = (idref) {
                .id = sval(v), .line = r->line, .col = r->col, .seq = seq, .rule = SIZE_MAX,
        };
}

static bool kind_value(pctx *c, const yaml_node_t *v, const char *what, fh_kind *ret) {
        const char *names[FH_KIND__MAX];
        const char *s;

        if (!text_value(c, v, what, SIZE_MAX))
                return false;
        if (fh_kind_from_string(sval(v), slen(v), ret) == 0)
                return true;
        for (int k = 0; k < FH_KIND__MAX; k++)
                names[k] = fh_kind_name((fh_kind) k);
        s = suggest(sval(v), slen(v), names, FH_KIND__MAX);
        if (s)
                err_node(c, v, "unknown kind '%s' (did you mean '%s'?)", show(sval(v), slen(v)).s, s);
        else
                err_node(c, v, "unknown kind '%s': kinds are rain, water_level, landslide, bridge",
                         show(sval(v), slen(v)).s);
        return false;
}

static void parse_kind(pctx *c, fh_rule *r, const yaml_node_t *v) {
        kind_value(c, v, "'kind'", &r->kind);
}

static bool parse_number(const char *s, size_t n, double *ret) {
        char buf[64], *end;
        double d;

        if (n == 0 || n >= sizeof(buf) || !((s[0] >= '0' && s[0] <= '9') || s[0] == '-' || s[0] == '+' || s[0] == '.'))
                return false;
        memcpy(buf, s, n);
        buf[n] = 0;
        d = strtod(buf, &end);
        if (end != buf + n || !isfinite(d))
                return false;
        *ret = d;
        return true;
}

static bool match_value(pctx *c, const yaml_node_t *v, const char *attr, fh_match_value *ret) {
        char what[96];

        snprintf(what, sizeof(what), "the match value for '%s'", attr);
        if (!text_value(c, v, what, MATCH_VALUE_MAX))
                return false;
        if (slen(v) == 0) {
                err_node(c, v, "the match value for '%s' is empty", attr);
                return false;
        }
        ret->is_number = v->data.scalar.style == YAML_PLAIN_SCALAR_STYLE && parse_number(sval(v), slen(v), &ret->num);
        if (!ret->is_number)
                ret->num = 0;
        ret->str = fh_strndup(sval(v), slen(v));
        return true;
}

static void parse_match(pctx *c, fh_rule *r, const yaml_node_t *v) {
        size_t n;

        if (v->type != YAML_MAPPING_NODE) {
                err_node(c, v, "'match' must be a mapping of attribute: value, like {region: miyun}, got %s",
                         node_kind(v));
                return;
        }
        n = (size_t) (v->data.mapping.pairs.top - v->data.mapping.pairs.start);
        if (n > MATCH_ATTRS_MAX) {
                err_node(c, v, "'match' has more than %d attributes", MATCH_ATTRS_MAX);
                return;
        }
        r->match = fh_calloc(n, sizeof(*r->match));
        for (size_t i = 0; i < n && !c->stop; i++) {
                const yaml_node_pair_t *pair = &v->data.mapping.pairs.start[i];
                const yaml_node_t *k = node(c, pair->key), *val = node(c, pair->value);
                fh_match *m;
                bool dup = false;

                if (!k || !val)
                        continue;
                if (k->type != YAML_SCALAR_NODE) {
                        err_node(c, k, "a match attribute must be a name, got %s", node_kind(k));
                        continue;
                }
                if (slen(k) > ATTR_NAME_MAX || !fh_is_identifier(sval(k), slen(k))) {
                        err_node(c, k, "match attribute '%s' is not a column name (lowercase letters, digits and '_', starting with a letter, at most %d)",
                                 show(sval(k), slen(k)).s, ATTR_NAME_MAX);
                        continue;
                }
                for (size_t j = 0; j < r->n_match; j++)
                        dup = dup || (strlen(r->match[j].attr) == slen(k) &&
                                      memcmp(r->match[j].attr, sval(k), slen(k)) == 0);
                if (dup) {
                        err_node(c, k, "duplicate match attribute '%s'", sval(k));
                        continue;
                }
                m = &r->match[r->n_match++];
                m->attr = fh_strndup(sval(k), slen(k));

                if (val->type == YAML_SCALAR_NODE) {
                        m->values = fh_calloc(1, sizeof(*m->values));
                        if (match_value(c, val, m->attr, &m->values[0]))
                                m->n_values = 1;
                } else if (val->type == YAML_SEQUENCE_NODE) {
                        size_t nv = (size_t) (val->data.sequence.items.top - val->data.sequence.items.start);

                        if (nv == 0) {
                                err_node(c, val, "the match list for '%s' is empty", m->attr);
                                continue;
                        }
                        if (nv > FH_MATCH_VALUES_MAX) {
                                err_node(c, val, "the match list for '%s' has more than %d values", m->attr,
                                         FH_MATCH_VALUES_MAX);
                                continue;
                        }
                        m->values = fh_calloc(nv, sizeof(*m->values));
                        for (size_t j = 0; j < nv && !c->stop; j++) {
                                const yaml_node_t *item = node(c, val->data.sequence.items.start[j]);

                                if (!item)
                                        continue;
                                if (item->type != YAML_SCALAR_NODE) {
                                        err_node(c, item, "a match value for '%s' must be text or a number, got %s",
                                                 m->attr, node_kind(item));
                                        continue;
                                }
                                if (match_value(c, item, m->attr, &m->values[m->n_values]))
                                        m->n_values++;
                        }
                } else {
                        err_node(c, val, "the match value for '%s' must be a value or a list of values, got a mapping",
                                 m->attr);
                }
        }
}

static fh_program *compile(pctx *c, const yaml_node_t *v, fh_type want, const char *what) {
        fh_program *p = NULL;
        fh_srcpos pos;
        origin o;
        size_t n0;

        if (v->type != YAML_SCALAR_NODE) {
                err_node(c, v, "%s must be an expression, got %s", what, node_kind(v));
                return NULL;
        }
        if (too_many(c))
                return NULL;
        o = scalar_origin(c, v);
        pos = (fh_srcpos) { .file = c->file, .line = o.line, .col = o.col };
        n0 = c->diags->n;
        if (fh_expr_compile(sval(v), slen(v), want, &pos, &c->rs->syms, &p, c->diags) < 0)
                p = NULL;
        if (!o.exact)
                for (size_t i = n0; i < c->diags->n; i++) {
                        c->diags->v[i].line = o.line;
                        c->diags->v[i].col = o.col;
                }
        return p;
}

static void parse_levels(pctx *c, fh_rule *r, const yaml_node_t *v) {
        static const char *const names[] = { "red", "orange", "yellow", "blue" };
        size_t n;

        if (v->type != YAML_MAPPING_NODE) {
                err_node(c, v, "'levels' must be a mapping of level: condition, like red: sum(rain_mm, 3h) >= 100, got %s",
                         node_kind(v));
                return;
        }
        n = (size_t) (v->data.mapping.pairs.top - v->data.mapping.pairs.start);
        if (n == 0) {
                err_node(c, v, "'levels' needs at least one of red, orange, yellow, blue");
                return;
        }
        for (size_t i = 0; i < n && !c->stop; i++) {
                const yaml_node_pair_t *pair = &v->data.mapping.pairs.start[i];
                const yaml_node_t *k = node(c, pair->key), *val = node(c, pair->value);
                fh_level l;
                char what[48];

                if (!k || !val)
                        continue;
                if (k->type != YAML_SCALAR_NODE) {
                        err_node(c, k, "a level must be red, orange, yellow or blue, got %s", node_kind(k));
                        continue;
                }
                if (fh_level_from_string(sval(k), slen(k), &l) < 0 || l == FH_LEVEL_NONE) {
                        const char *s = suggest(sval(k), slen(k), names, FH_ARRAY_SIZE(names));
                        if (s)
                                err_node(c, k, "unknown level '%s' (did you mean '%s'?)", show(sval(k), slen(k)).s, s);
                        else
                                err_node(c, k, "unknown level '%s': levels are red, orange, yellow, blue",
                                         show(sval(k), slen(k)).s);
                        continue;
                }
                if (r->levels[l]) {
                        err_node(c, k, "duplicate level '%s'", fh_level_name(l));
                        continue;
                }
                snprintf(what, sizeof(what), "the condition for '%s'", fh_level_name(l));
                r->levels[l] = compile(c, val, FH_TYPE_BOOL, what);
        }
}

static void parse_duration(pctx *c, const yaml_node_t *v, const char *key, int64_t *ret) {
        if (v->type == YAML_SCALAR_NODE && v->data.scalar.style == YAML_PLAIN_SCALAR_STYLE && scalar_is(v, "0")) {
                *ret = 0;
                return;
        }
        if (v->type != YAML_SCALAR_NODE || fh_duration_parse(sval(v), slen(v), ret) < 0)
                err_node(c, v, "'%s' must be a duration like 0s, 30m, 2h or 1d, got %s%s%s", key,
                         v->type == YAML_SCALAR_NODE ? "'" : "",
                         v->type == YAML_SCALAR_NODE ? show(sval(v), slen(v)).s : node_kind(v),
                         v->type == YAML_SCALAR_NODE ? "'" : "");
}

static void tpl_push(fh_template *t, fh_tpl_kind kind, const char *s, size_t n) {
        t->parts = fh_realloc(t->parts, (t->n_parts + 1) * sizeof(*t->parts));
        t->parts[t->n_parts++] = (fh_tpl_part) { .kind = kind, .text = s ? fh_strndup(s, n) : NULL, .len = s ? n : 0 };
}

static void tpl_flush(fh_template *t, fh_buf *text) {
        if (text->len > 0)
                tpl_push(t, FH_TPL_TEXT, text->data, text->len);
        fh_buf_reset(text);
}

static fh_template *parse_message(pctx *c, const yaml_node_t *v) {
        static const struct { const char *name; fh_tpl_kind kind; } names[] = {
                { "sensor", FH_TPL_SENSOR },
                { "title", FH_TPL_TITLE },
                { "level", FH_TPL_LEVEL },
                { "level_cn", FH_TPL_LEVEL_CN },
                { "value", FH_TPL_VALUE },
                { "ts", FH_TPL_TS },
                { "unit", FH_TPL_UNIT },
        };
        static const char *const hints[] = { "sensor", "title", "level", "level_cn", "value", "ts", "unit",
                                             "station.name" };
        const char *s = sval(v);
        size_t n = slen(v);
        origin o = scalar_origin(c, v);
        fh_template *t = fh_calloc(1, sizeof(*t));
        fh_buf text = FH_BUF_NULL;
        unsigned line, col;
        bool ok = true;

        for (size_t i = 0; i < n;) {
                if (s[i] == '}') {
                        if (i + 1 < n && s[i + 1] == '}') {
                                fh_buf_putc(&text, '}');
                                i += 2;
                                continue;
                        }
                        value_pos(&o, s, i, &line, &col);
                        err_at(c, line, col, "unmatched '}' in message (write '}}' for a literal brace)");
                        ok = false;
                        i++;
                        continue;
                }
                if (s[i] != '{') {
                        fh_buf_putc(&text, s[i++]);
                        continue;
                }
                if (i + 1 < n && s[i + 1] == '{') {
                        fh_buf_putc(&text, '{');
                        i += 2;
                        continue;
                }

                const char *name = s + i + 1;
                const char *close = memchr(name, '}', n - i - 1);
                size_t nl;
                bool known = false;

                value_pos(&o, s, i, &line, &col);
                if (!close) {
                        err_at(c, line, col, "unterminated '{' in message (write '{{' for a literal brace)");
                        ok = false;
                        break;
                }
                nl = (size_t) (close - name);
                for (size_t k = 0; k < FH_ARRAY_SIZE(names) && !known; k++)
                        if (strlen(names[k].name) == nl && memcmp(names[k].name, name, nl) == 0) {
                                tpl_flush(t, &text);
                                tpl_push(t, names[k].kind, NULL, 0);
                                known = true;
                                /* Resolved once every file is read. */
                                if (names[k].kind == FH_TPL_UNIT && !t->unit_line) {
                                        t->unit_line = line;
                                        t->unit_col = col;
                                }
                        }
                if (!known && nl > 8 && memcmp(name, "station.", 8) == 0) {
                        if (nl - 8 <= ATTR_NAME_MAX && fh_is_identifier(name + 8, nl - 8)) {
                                tpl_flush(t, &text);
                                tpl_push(t, FH_TPL_STATION, name + 8, nl - 8);
                        } else {
                                err_at(c, line, col, "'{%s}' needs a column name after 'station.' (lowercase letters, digits and '_')",
                                       show(name, nl).s);
                                ok = false;
                        }
                        known = true;
                }
                if (!known && nl == 7 && memcmp(name, "station", 7) == 0) {
                        err_at(c, line, col, "unknown placeholder '{station}' (write '{station.<column>}', like '{station.name}')");
                        ok = false;
                        known = true;
                }
                if (!known) {
                        const char *h = suggest(name, nl, hints, FH_ARRAY_SIZE(hints));
                        if (h)
                                err_at(c, line, col, "unknown placeholder '{%s}' (did you mean '{%s}'?)", show(name, nl).s, h);
                        else
                                err_at(c, line, col, "unknown placeholder '{%s}'", show(name, nl).s);
                        ok = false;
                }
                i += nl + 2;
        }
        tpl_flush(t, &text);
        fh_buf_free(&text);
        if (!ok) {
                template_free(t);
                return NULL;
        }
        return t;
}

/* ---- hashing ----------------------------------------------------------- */

/* FNV-1a over a length-prefixed serialisation, so that no two different
 * rules serialise to the same bytes. */
static uint64_t hash_u64(uint64_t h, uint64_t v) {
        unsigned char b[8];

        for (int i = 0; i < 8; i++)
                b[i] = (unsigned char) (v >> (8 * i));
        return fh_fnv1a(h, b, sizeof(b));
}

static uint64_t hash_str(uint64_t h, const char *s, size_t n) {
        if (!s)
                return hash_u64(h, UINT64_MAX);
        return fh_fnv1a(hash_u64(h, n), s, n);
}

static uint64_t rule_hash(const fh_rule *r, const char *message, size_t message_len) {
        uint64_t h = FH_FNV1A_INIT;

        h = hash_u64(h, (uint64_t) r->kind);
        h = hash_str(h, r->title, r->title ? strlen(r->title) : 0);
        h = hash_u64(h, r->n_match);
        for (size_t i = 0; i < r->n_match; i++) {
                h = hash_str(h, r->match[i].attr, strlen(r->match[i].attr));
                h = hash_u64(h, r->match[i].n_values);
                for (size_t j = 0; j < r->match[i].n_values; j++) {
                        h = hash_u64(h, r->match[i].values[j].is_number);
                        h = hash_str(h, r->match[i].values[j].str, strlen(r->match[i].values[j].str));
                }
        }
        for (int l = FH_LEVEL_BLUE; l < FH_LEVEL__MAX; l++) {
                const fh_program *p = r->levels[l];
                h = hash_str(h, p ? p->source : NULL, p ? strlen(p->source) : 0);
        }
        h = hash_str(h, r->report ? r->report->source : NULL, r->report ? strlen(r->report->source) : 0);
        h = hash_u64(h, (uint64_t) r->for_ms);
        h = hash_u64(h, (uint64_t) r->clear_after_ms);
        h = hash_str(h, message, message_len);
        return h;
}

/* ---- rules ------------------------------------------------------------- */

enum {
        K_ID, K_TITLE, K_KIND, K_MATCH, K_LEVELS, K_REPORT, K_FOR, K_CLEAR_AFTER, K_MESSAGE, K__MAX
};

static const char *const rule_keys[K__MAX] = {
        "id", "title", "kind", "match", "levels", "report", "for", "clear_after", "message",
};

static void parse_rule(pctx *c, const yaml_node_t *n, size_t seq) {
        const yaml_node_t *vals[K__MAX] = { 0 };
        fh_rule r = { 0 };
        size_t e0 = c->diags->n_errors, n_ids0 = c->n_ids, np;
        const char *message = NULL;
        size_t message_len = 0;

        if (n->type != YAML_MAPPING_NODE) {
                err_node(c, n, "a rule must be a mapping with id, kind and levels, got %s", node_kind(n));
                return;
        }
        np = (size_t) (n->data.mapping.pairs.top - n->data.mapping.pairs.start);
        for (size_t i = 0; i < np && !c->stop; i++) {
                const yaml_node_pair_t *pair = &n->data.mapping.pairs.start[i];
                const yaml_node_t *k = node(c, pair->key), *val = node(c, pair->value);
                size_t key;

                if (!k || !val)
                        continue;
                if (k->type != YAML_SCALAR_NODE) {
                        err_node(c, k, "a key must be a name, got %s", node_kind(k));
                        continue;
                }
                for (key = 0; key < K__MAX; key++)
                        if (scalar_is(k, rule_keys[key]))
                                break;
                if (key == K__MAX) {
                        const char *s = suggest(sval(k), slen(k), rule_keys, K__MAX);
                        if (s)
                                err_node(c, k, "unknown key '%s' (did you mean '%s'?)", show(sval(k), slen(k)).s, s);
                        else
                                err_node(c, k, "unknown key '%s'", show(sval(k), slen(k)).s);
                        continue;
                }
                if (vals[key]) {
                        err_node(c, k, "duplicate key '%s'", rule_keys[key]);
                        continue;
                }
                vals[key] = val;
        }
        if (c->stop)
                return;

        if (vals[K_ID])
                parse_id(c, &r, vals[K_ID], seq);
        else
                err_node(c, n, "a rule needs an 'id'");
        if (vals[K_TITLE] && !is_null(vals[K_TITLE]) && text_value(c, vals[K_TITLE], "'title'", TITLE_MAX))
                r.title = fh_strndup(sval(vals[K_TITLE]), slen(vals[K_TITLE]));
        if (vals[K_KIND])
                parse_kind(c, &r, vals[K_KIND]);
        else
                err_node(c, n, "a rule needs a 'kind' (rain, water_level, landslide or bridge)");
        if (vals[K_MATCH])
                parse_match(c, &r, vals[K_MATCH]);
        if (vals[K_LEVELS])
                parse_levels(c, &r, vals[K_LEVELS]);
        else
                err_node(c, n, "a rule needs 'levels'");
        if (vals[K_REPORT])
                r.report = compile(c, vals[K_REPORT], FH_TYPE_NUMBER, "'report'");
        if (vals[K_FOR])
                parse_duration(c, vals[K_FOR], "for", &r.for_ms);
        if (vals[K_CLEAR_AFTER])
                parse_duration(c, vals[K_CLEAR_AFTER], "clear_after", &r.clear_after_ms);
        if (vals[K_MESSAGE] && !is_null(vals[K_MESSAGE]) && text_value(c, vals[K_MESSAGE], "'message'", MESSAGE_MAX)) {
                message = sval(vals[K_MESSAGE]);
                message_len = slen(vals[K_MESSAGE]);
                r.message = parse_message(c, vals[K_MESSAGE]);
        }

        if (c->diags->n_errors != e0) {
                rule_clear(&r);
                return;
        }
        for (int l = 0; l < FH_LEVEL__MAX; l++)
                r.uses_age = r.uses_age || (r.levels[l] && r.levels[l]->uses_age);
        r.uses_age = r.uses_age || (r.report && r.report->uses_age);
        r.hash = rule_hash(&r, message, message_len);
        r.file = fh_strdup(c->file);

        if ((c->n_rules & (c->n_rules - 1)) == 0)
                c->rules = fh_realloc(c->rules, (c->n_rules ? 2 * c->n_rules : 1) * sizeof(*c->rules));
        if (c->n_ids > n_ids0)
                c->ids[c->n_ids - 1].rule = c->n_rules;
        c->rules[c->n_rules++] = r;
}

static int idref_cmp(const void *a, const void *b) {
        const idref *x = a, *y = b;
        int r = strcmp(x->id, y->id);

        if (r)
                return r;
        return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* Reports ids defined twice in this file, at the later definition, and
 * drops that rule so the set stays unique. */
static void check_file_duplicates(pctx *c) {
        size_t first = 0;

        if (c->n_ids < 2)
                return;
        qsort(c->ids, c->n_ids, sizeof(*c->ids), idref_cmp);
        for (size_t i = 1; i < c->n_ids; i++) {
                if (strcmp(c->ids[first].id, c->ids[i].id) != 0) {
                        first = i;
                        continue;
                }
                err_at(c, c->ids[i].line, c->ids[i].col, "duplicate rule id '%s' (first defined at %s:%u)",
                       c->ids[i].id, c->file, c->ids[first].line);
                if (c->ids[i].rule != SIZE_MAX)
                        rule_clear(&c->rules[c->ids[i].rule]);
        }
}

static void parse_rules(pctx *c, const yaml_node_t *v) {
        size_t n;

        if (is_null(v))
                return;
        if (v->type != YAML_SEQUENCE_NODE) {
                err_node(c, v, "'rules' must be a list of rules, got %s", node_kind(v));
                return;
        }
        n = (size_t) (v->data.sequence.items.top - v->data.sequence.items.start);
        if (n > FH_RULES_MAX - FH_MIN(c->rs->n_rules, (size_t) FH_RULES_MAX)) {
                err_node(c, v, "too many rules: at most %d in all files together", FH_RULES_MAX);
                return;
        }
        for (size_t i = 0; i < n && !too_many(c); i++) {
                const yaml_node_t *item = node(c, v->data.sequence.items.start[i]);
                if (item)
                        parse_rule(c, item, i);
        }
        check_file_duplicates(c);
}

/* ---- field declarations ------------------------------------------------ */

const fh_field_decl *fh_ruleset_field(const fh_ruleset *rs, fh_kind kind, const char *name, size_t len) {
        for (size_t i = 0; i < rs->n_decls; i++) {
                const fh_field_decl *d = &rs->decls[i];
                if (d->kind == kind && strlen(d->name) == len && memcmp(d->name, name, len) == 0)
                        return d;
        }
        return NULL;
}

static void parse_kind_fields(pctx *c, fh_kind kind, const yaml_node_t *v) {
        fh_ruleset *rs = c->rs;
        size_t n;

        c->rs->declared[kind] = true;
        if (is_null(v))
                return;   /* a kind whose readings carry no field a rule may read */
        if (v->type != YAML_MAPPING_NODE) {
                err_node(c, v, "the fields of kind %s must map each field name to its unit, like 'rain_mm: mm', got %s",
                         fh_kind_name(kind), node_kind(v));
                return;
        }
        n = (size_t) (v->data.mapping.pairs.top - v->data.mapping.pairs.start);
        for (size_t i = 0; i < n && !c->stop; i++) {
                const yaml_node_pair_t *pair = &v->data.mapping.pairs.start[i];
                const yaml_node_t *k = node(c, pair->key), *u = node(c, pair->value);
                const fh_field_decl *prev;
                fh_field_decl d = { .kind = kind };

                if (!k || !u || !text_value(c, k, "a field name", SIZE_MAX))
                        continue;
                if (slen(k) > FH_FIELD_NAME_MAX || !fh_is_identifier(sval(k), slen(k))) {
                        err_node(c, k, "field name '%s' is not valid: at most %d lowercase letters, digits and '_', "
                                 "starting with a letter", show(sval(k), slen(k)).s, FH_FIELD_NAME_MAX);
                        continue;
                }
                if (!is_null(u) && !text_value(c, u, "a unit", FH_UNIT_MAX))
                        continue;
                mark_pos(c, &k->start_mark, &d.line, &d.col);
                prev = fh_ruleset_field(rs, kind, sval(k), slen(k));
                if (prev) {
                        err_node(c, k, "field '%s' of kind %s is declared twice (first at %s:%u)",
                                 show(sval(k), slen(k)).s, fh_kind_name(kind), prev->file, prev->line);
                        continue;
                }
                if (rs->n_decls >= FH_FIELD_DECLS_MAX) {
                        err_node(c, k, "more than %d field declarations", FH_FIELD_DECLS_MAX);
                        c->stop = true;
                        return;
                }
                d.name = fh_strndup(sval(k), slen(k));
                d.unit = is_null(u) ? fh_strdup("") : fh_strndup(sval(u), slen(u));
                d.file = fh_strdup(c->file);
                rs->decls = fh_realloc(rs->decls, (rs->n_decls + 1) * sizeof(*rs->decls));
                rs->decls[rs->n_decls++] = d;
        }
}

static void parse_fields(pctx *c, const yaml_node_t *v) {
        size_t n;

        if (v->type != YAML_MAPPING_NODE) {
                err_node(c, v, "'fields' must map each station kind to its fields, got %s", node_kind(v));
                return;
        }
        n = (size_t) (v->data.mapping.pairs.top - v->data.mapping.pairs.start);
        for (size_t i = 0; i < n && !c->stop; i++) {
                const yaml_node_pair_t *pair = &v->data.mapping.pairs.start[i];
                const yaml_node_t *k = node(c, pair->key), *val = node(c, pair->value);
                fh_kind kind;

                if (k && val && kind_value(c, k, "a station kind", &kind))
                        parse_kind_fields(c, kind, val);
        }
}

/* ---- a file ------------------------------------------------------------ */

static void parse_top(pctx *c, const yaml_node_t *root) {
        const yaml_node_t *rules = NULL, *fields = NULL;
        size_t n;

        if (is_null(root))
                return;
        if (root->type != YAML_MAPPING_NODE) {
                err_node(c, root, "a rule file must be a mapping with the key 'rules:' (or 'fields:'), got %s",
                         node_kind(root));
                return;
        }
        n = (size_t) (root->data.mapping.pairs.top - root->data.mapping.pairs.start);
        for (size_t i = 0; i < n && !c->stop; i++) {
                const yaml_node_pair_t *pair = &root->data.mapping.pairs.start[i];
                const yaml_node_t *k = node(c, pair->key), *val = node(c, pair->value);

                if (!k || !val)
                        continue;
                if (scalar_is(k, "fields")) {
                        if (fields)
                                err_node(c, k, "duplicate key 'fields'");
                        else
                                fields = val;
                        continue;
                }
                if (!scalar_is(k, "rules")) {
                        static const char *const top[] = { "rules", "fields" };
                        const char *s = k->type == YAML_SCALAR_NODE ? suggest(sval(k), slen(k), top, 2) : NULL;

                        if (k->type != YAML_SCALAR_NODE)
                                err_node(c, k, "a key must be a name, got %s", node_kind(k));
                        else if (s)
                                err_node(c, k, "unknown key '%s' (did you mean '%s'?)", show(sval(k), slen(k)).s, s);
                        else
                                err_node(c, k, "unknown key '%s': a rule file has only 'rules:' and 'fields:'",
                                         show(sval(k), slen(k)).s);
                        continue;
                }
                if (rules) {
                        err_node(c, k, "duplicate key 'rules'");
                        continue;
                }
                rules = val;
        }
        if (fields)
                parse_fields(c, fields);
        if (!rules) {
                if (!fields && c->diags->n_errors == c->errors0)
                        err_node(c, root, "a rule file needs the key 'rules:'");
                return;
        }
        parse_rules(c, rules);
}

static void yaml_error(pctx *c, const yaml_parser_t *parser, size_t bom) {
        unsigned line, col;

        if (parser->error == YAML_MEMORY_ERROR)
                fh_oom();
        if (parser->error == YAML_READER_ERROR) {
                offset_pos(c, parser->problem_offset + bom, &line, &col);
                if (parser->problem_value != -1)
                        err_at(c, line, col, "invalid YAML: %s (#%X)", parser->problem ? parser->problem : "unreadable input",
                               (unsigned) parser->problem_value);
                else
                        err_at(c, line, col, "invalid YAML: %s", parser->problem ? parser->problem : "unreadable input");
                return;
        }
        mark_pos(c, &parser->problem_mark, &line, &col);
        if (parser->context) {
                unsigned cl, cc;
                mark_pos(c, &parser->context_mark, &cl, &cc);
                err_at(c, line, col, "invalid YAML: %s (%s at line %u)",
                       parser->problem ? parser->problem : "syntax error", parser->context, cl);
        } else {
                err_at(c, line, col, "invalid YAML: %s", parser->problem ? parser->problem : "syntax error");
        }
}

int fh_ruleset_parse(fh_ruleset *rs, const char *file, const char *text, size_t len, fh_diags *diags) {
        pctx c = { .rs = rs, .file = file, .text = text ? text : "", .len = text ? len : 0, .diags = diags };
        yaml_parser_t parser;
        yaml_document_t extra;
        size_t bom;
        int r;

        rs->finished = false;
        c.errors0 = diags->n_errors;
        bom = c.len >= 3 && memcmp(c.text, "\xef\xbb\xbf", 3) == 0 ? 3 : 0;
        build_lines(&c, bom);

        if (!yaml_parser_initialize(&parser))
                fh_oom();
        yaml_parser_set_input_string(&parser, (const unsigned char *) c.text + bom, c.len - bom);
        /* UTF-8 only: a UTF-16 file would not map to byte columns. */
        yaml_parser_set_encoding(&parser, YAML_UTF8_ENCODING);
        if (!yaml_parser_load(&parser, &c.doc)) {
                yaml_error(&c, &parser, bom);
                goto out;
        }

        {
                const yaml_node_t *root = yaml_document_get_root_node(&c.doc);
                if (root)
                        parse_top(&c, root);
        }

        if (!c.stop) {
                if (!yaml_parser_load(&parser, &extra)) {
                        yaml_error(&c, &parser, bom);
                } else {
                        const yaml_node_t *root = yaml_document_get_root_node(&extra);
                        if (root)
                                err_node(&c, root, "a rule file holds one YAML document; this is a second one");
                        yaml_document_delete(&extra);
                }
        }

        /* The rules keep nothing that points into the document. */
        if (c.n_rules > 0) {
                size_t need = rs->n_rules + c.n_rules;

                if (need > rs->cap_rules) {
                        size_t cap = rs->cap_rules ? rs->cap_rules : 16;
                        while (cap < need)
                                cap *= 2;
                        rs->rules = fh_realloc(rs->rules, cap * sizeof(*rs->rules));
                        rs->cap_rules = cap;
                }
                for (size_t i = 0; i < c.n_rules; i++)
                        if (c.rules[i].id)   /* cleared: a duplicate in this file */
                                rs->rules[rs->n_rules++] = c.rules[i];
        }
        yaml_document_delete(&c.doc);
out:
        yaml_parser_delete(&parser);
        r = diags->n_errors == c.errors0 ? 0 : -EINVAL;
        free(c.rules);
        free(c.ids);
        free(c.lines);
        return r;
}

/* ---- the set ----------------------------------------------------------- */

int fh_ruleset_new(fh_ruleset **ret) {
        *ret = fh_calloc(1, sizeof(**ret));
        return 0;
}

fh_ruleset *fh_ruleset_free(fh_ruleset *rs) {
        if (!rs)
                return NULL;
        for (size_t i = 0; i < rs->n_rules; i++)
                rule_clear(&rs->rules[i]);
        free(rs->rules);
        fh_symbols_clear(&rs->syms);
        for (size_t i = 0; i < rs->n_decls; i++) {
                free(rs->decls[i].name);
                free(rs->decls[i].unit);
                free(rs->decls[i].file);
        }
        free(rs->decls);
        free(rs);
        return NULL;
}

typedef struct order {
        const char *id;
        size_t i;
} order;

static int check_program_fields(const fh_ruleset *rs, const fh_rule *rule, const fh_program *p, fh_diags *diags) {
        const char *names[FH_FIELD_DECLS_MAX];
        size_t n_names = 0;
        int r = 0;

        if (!p)
                return 0;
        for (size_t i = 0; i < rs->n_decls && n_names < FH_FIELD_DECLS_MAX; i++)
                if (rs->decls[i].kind == rule->kind)
                        names[n_names++] = rs->decls[i].name;
        for (uint32_t i = 0; i < p->n_refs; i++) {
                const char *f = rs->syms.fields[p->refs[i].field];
                if (fh_ruleset_field(rs, rule->kind, f, strlen(f)))
                        continue;
                const char *s = suggest(f, strlen(f), names, n_names);
                if (s)
                        fh_diags_error(diags, rule->file, p->refs[i].line, p->refs[i].col,
                                       "unknown field '%s' for kind %s (did you mean '%s'?)", f,
                                       fh_kind_name(rule->kind), s);
                else
                        fh_diags_error(diags, rule->file, p->refs[i].line, p->refs[i].col,
                                       "unknown field '%s': kind %s declares no such field (see 'fields:')", f,
                                       fh_kind_name(rule->kind));
                r = -EINVAL;
        }
        return r;
}

/* The unit of what `report` computes, when it is one field's value in that
 * field's unit: the field itself, last/sum/avg/min/max/delta of it, with
 * abs() or a minus; rate(f, d) is per d ("mm/d"). Anything else (a sum of
 * fields, a ratio, atan_deg, count, age) has no unit fenghuo could name. */
static int resolve_unit(const fh_ruleset *rs, fh_rule *rule, fh_diags *diags) {
        const fh_program *p = rule->report;
        const fh_insn *field = NULL;
        const char *why = NULL;
        fh_buf unit = FH_BUF_NULL;

        for (uint32_t i = 0; p && i < p->n && !why; i++)
                switch ((fh_opcode) p->code[i].op) {
                case FH_OP_LAST: case FH_OP_SUM: case FH_OP_AVG: case FH_OP_MIN: case FH_OP_MAX:
                case FH_OP_DELTA: case FH_OP_RATE:
                        if (field)
                                why = "its report reads more than one value";
                        field = &p->code[i];
                        break;
                case FH_OP_NEG: case FH_OP_ABS:
                        break;
                default:
                        why = "its report is not one field's value (a field, last, sum, avg, min, max, delta or "
                              "rate of it, abs or minus)";
                        break;
                }
        if (!why && !field)
                why = "its report reads no field";
        if (!why) {
                const char *f = rs->syms.fields[field->field];
                const fh_field_decl *d = fh_ruleset_field(rs, rule->kind, f, strlen(f));
                if (!d)
                        why = rs->declared[rule->kind] ? "the field is not declared"
                                                       : "no 'fields:' declares its kind's fields";
                else {
                        fh_buf_puts(&unit, d->unit);
                        if (field->op == FH_OP_RATE) {
                                int64_t ms = rs->syms.windows[field->arg].ms;
                                static const struct { int64_t ms; char c; } per[] = {
                                        { 86400000, 'd' }, { 3600000, 'h' }, { 60000, 'm' }, { 1000, 's' },
                                };
                                for (size_t k = 0; k < FH_ARRAY_SIZE(per); k++)
                                        if (ms % per[k].ms == 0) {
                                                if (ms == per[k].ms)
                                                        fh_buf_printf(&unit, "/%c", per[k].c);
                                                else
                                                        fh_buf_printf(&unit, "/%lld%c", (long long) (ms / per[k].ms),
                                                                      per[k].c);
                                                break;
                                        }
                        }
                }
        }
        free(rule->unit);
        rule->unit = why ? NULL : fh_strndup(unit.data ? unit.data : "", unit.len);
        fh_buf_free(&unit);
        if (!rule->message || !rule->message->unit_line || rule->unit)
                return 0;
        fh_diags_error(diags, rule->file, rule->message->unit_line, rule->message->unit_col,
                       "'{unit}' has no unit to show: %s", why);
        return -EINVAL;
}

/* Kinds without declarations are not checked, so that rule sets from
 * before declarations keep loading (the loader warns, src/cli/load.c). */
static int check_fields(fh_ruleset *rs, fh_diags *diags) {
        int r = 0;

        for (size_t i = 0; i < rs->n_rules; i++) {
                fh_rule *rule = &rs->rules[i];

                if (rs->declared[rule->kind]) {
                        for (int l = 0; l < FH_LEVEL__MAX; l++)
                                if (check_program_fields(rs, rule, rule->levels[l], diags) < 0)
                                        r = -EINVAL;
                        if (check_program_fields(rs, rule, rule->report, diags) < 0)
                                r = -EINVAL;
                }
                if (resolve_unit(rs, rule, diags) < 0)
                        r = -EINVAL;
        }
        return r;
}

static int order_cmp(const void *a, const void *b) {
        const order *x = a, *y = b;
        int r = strcmp(x->id, y->id);

        if (r)
                return r;
        return x->i < y->i ? -1 : x->i > y->i;
}

int fh_ruleset_finish(fh_ruleset *rs, fh_diags *diags) {
        order *o;
        fh_rule *sorted;
        size_t n = rs->n_rules, k = 0, first = 0;
        int r = 0;

        o = fh_calloc(n, sizeof(*o));
        for (size_t i = 0; i < n; i++)
                o[i] = (order) { .id = rs->rules[i].id, .i = i };
        /* Ties keep load order, so "the second definition" is the one
         * loaded later. */
        qsort(o, n, sizeof(*o), order_cmp);

        sorted = fh_calloc(n, sizeof(*sorted));
        for (size_t j = 0; j < n; j++) {
                fh_rule *cur = &rs->rules[o[j].i];

                if (k > 0 && strcmp(sorted[k - 1].id, cur->id) == 0) {
                        const fh_rule *prev = &rs->rules[o[first].i];
                        fh_diags_error(diags, cur->file, cur->line, cur->col,
                                       "duplicate rule id '%s' (first defined at %s:%u)", cur->id, prev->file,
                                       prev->line);
                        rule_clear(cur);
                        r = -EINVAL;
                        continue;
                }
                first = j;
                sorted[k++] = *cur;
        }
        free(rs->rules);
        free(o);
        rs->rules = sorted;
        rs->n_rules = k;
        rs->cap_rules = n;
        if (check_fields(rs, diags) < 0)
                r = -EINVAL;
        rs->finished = true;
        return r;
}

static int find_cmp(const void *key, const void *elem) {
        return strcmp(key, ((const fh_rule *) elem)->id);
}

const fh_rule *fh_ruleset_find(const fh_ruleset *rs, const char *id) {
        if (!rs || !id || rs->n_rules == 0)
                return NULL;
        if (rs->finished)
                return bsearch(id, rs->rules, rs->n_rules, sizeof(*rs->rules), find_cmp);
        for (size_t i = 0; i < rs->n_rules; i++)
                if (strcmp(rs->rules[i].id, id) == 0)
                        return &rs->rules[i];
        return NULL;
}
