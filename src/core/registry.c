/* The station registry (SPEC §2): RFC 4180 CSV in, a sorted, hashed,
 * read-only table out.
 *
 * Memory: every cell's text lives in one arena sized up front from the
 * input (decoded cells are never longer than their raw bytes, and there are
 * at most as many cells as separators plus one), so strings never move and
 * 100,000 stations cost a handful of allocations. Attributes are one
 * rows x columns block. */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fenghuo/buf.h"
#include "fenghuo/registry.h"

/* A file with thousands of problems is the wrong file; listing them all
 * would only bury the first ones (and cost memory proportional to it). */
#define ERRORS_MAX 100

/* The public struct plus what only the destructor needs; the caller sees
 * &pub and never the rest. */
typedef struct registry {
        fh_registry pub;
        fh_attr *attr_block;
} registry;

typedef struct cell {
        const char *s;     /* decoded, NUL-terminated, in the arena */
        size_t len;
        unsigned line;
        unsigned col;
        bool quoted;
} cell;

typedef enum cell_end {
        END_CELL,          /* a comma follows */
        END_ROW,           /* a line break or the end of the text follows */
        END_FATAL,         /* unterminated quote: nothing after it is a row */
} cell_end;

typedef struct parser {
        const char *file;
        const char *p;
        const char *end;
        const char *content_end;  /* end without the trailing blank lines */
        const char *line_start;
        unsigned line;
        char *arena;
        size_t arena_used;
        fh_diags *diags;
        size_t n_errors;
        bool stop;
} parser;

__attribute__((format(printf, 4, 5)))
static void perr(parser *ps, unsigned line, unsigned col, const char *fmt, ...) {
        char msg[320];
        va_list ap;

        if (ps->n_errors >= ERRORS_MAX) {
                ps->stop = true;
                return;
        }
        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        fh_diags_error(ps->diags, ps->file, line, col, "%s", msg);
        if (++ps->n_errors == ERRORS_MAX) {
                fh_diags_error(ps->diags, ps->file, line, col,
                               "too many errors (%d), giving up on this file", ERRORS_MAX);
                ps->stop = true;
        }
}

/* A cell as it can appear in a message: short, one line, whole characters
 * (the cell is valid UTF-8 by the time this runs). */
static const char *show(char out[64], const char *s, size_t len) {
        size_t n = len, i;
        bool cut = false;

        if (n > 40) {
                n = 40;
                while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
                        n--;
                cut = true;
        }
        for (i = 0; i < n; i++) {
                unsigned char c = (unsigned char)s[i];
                out[i] = (c < 0x20 || c == 0x7F) ? '?' : (char)c;
        }
        if (cut) {
                memcpy(out + i, "...", 3);
                i += 3;
        }
        out[i] = '\0';
        return out;
}

/* 0 when s is valid UTF-8 without NUL, 1 for a NUL byte, -1 otherwise. */
static int check_utf8(const char *str, size_t len) {
        const unsigned char *s = (const unsigned char *)str;
        size_t i = 0;

        while (i < len) {
                unsigned char c = s[i];
                unsigned char lo = 0x80, hi = 0xBF;
                size_t need, k;

                if (c == 0)
                        return 1;
                if (c < 0x80) {
                        i++;
                        continue;
                }
                if (c >= 0xC2 && c <= 0xDF)
                        need = 1;
                else if (c >= 0xE0 && c <= 0xEF) {
                        need = 2;
                        if (c == 0xE0)
                                lo = 0xA0;        /* overlong */
                        else if (c == 0xED)
                                hi = 0x9F;        /* surrogates */
                } else if (c >= 0xF0 && c <= 0xF4) {
                        need = 3;
                        if (c == 0xF0)
                                lo = 0x90;        /* overlong */
                        else if (c == 0xF4)
                                hi = 0x8F;        /* above U+10FFFF */
                } else
                        return -1;
                if (len - i - 1 < need)
                        return -1;
                if (s[i + 1] < lo || s[i + 1] > hi)
                        return -1;
                for (k = 2; k <= need; k++)
                        if ((s[i + k] & 0xC0) != 0x80)
                                return -1;
                i += need + 1;
        }
        return 0;
}

static bool is_digit(char c) {
        return c >= '0' && c <= '9';
}

/* A decimal number and nothing else: strtod alone would also take leading
 * spaces, hex, "inf" and "nan", none of which a station table means as a
 * number. s is NUL-terminated at len. */
static bool parse_number(const char *s, size_t len, double *ret) {
        size_t i = 0, digits = 0;
        char *endp;
        double v;

        if (i < len && (s[i] == '+' || s[i] == '-'))
                i++;
        while (i < len && is_digit(s[i]))
                i++, digits++;
        if (i < len && s[i] == '.') {
                i++;
                while (i < len && is_digit(s[i]))
                        i++, digits++;
        }
        if (digits == 0)
                return false;
        if (i < len && (s[i] == 'e' || s[i] == 'E')) {
                size_t exp_digits = 0;

                i++;
                if (i < len && (s[i] == '+' || s[i] == '-'))
                        i++;
                while (i < len && is_digit(s[i]))
                        i++, exp_digits++;
                if (exp_digits == 0)
                        return false;
        }
        if (i != len)
                return false;
        v = strtod(s, &endp);
        /* endp short of the end: a locale whose decimal point is not '.'. */
        if (endp != s + len || !isfinite(v))
                return false;
        *ret = v;
        return true;
}

static bool id_char(char c) {
        return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || is_digit(c) ||
               c == '.' || c == '_' || c == ':' || c == '-';
}

static bool valid_id(const char *s, size_t len) {
        if (len == 0 || len > FH_SENSOR_ID_MAX)
                return false;
        for (size_t i = 0; i < len; i++)
                if (!id_char(s[i]))
                        return false;
        return true;
}

static void newline(parser *ps, const char *after) {
        ps->line++;
        ps->line_start = after;
}

/* Reads one cell at ps->p into the arena; leaves ps->p after its
 * terminator (comma or line break). Syntax problems are reported here and
 * flagged in *bad so the row is not used. */
static cell_end read_cell(parser *ps, cell *c, bool *bad) {
        const char *p = ps->p, *end = ps->end;
        char *out = ps->arena + ps->arena_used;
        size_t n = 0;

        c->line = ps->line;
        c->col = (unsigned)(p - ps->line_start) + 1;
        c->quoted = p < end && *p == '"';
        c->s = out;

        if (c->quoted) {
                p++;
                for (;;) {
                        if (p >= end) {
                                perr(ps, c->line, c->col, "unterminated quoted cell");
                                ps->p = p;
                                *bad = true;
                                out[n] = '\0';
                                c->len = n;
                                ps->arena_used += n + 1;
                                return END_FATAL;
                        }
                        if (*p == '"') {
                                if (p + 1 < end && p[1] == '"') {
                                        out[n++] = '"';
                                        p += 2;
                                        continue;
                                }
                                p++;
                                break;
                        }
                        if (*p == '\n')
                                newline(ps, p + 1);
                        out[n++] = *p++;
                }
                if (p < end && *p != ',' && *p != '\n' && !(*p == '\r' && p + 1 < end && p[1] == '\n')) {
                        perr(ps, c->line, c->col, "text after the closing quote of a quoted cell");
                        *bad = true;
                        /* Resynchronise at the next separator. */
                        while (p < end && *p != ',' && *p != '\n')
                                p++;
                        if (p < end && *p == '\n' && p[-1] == '\r')
                                p--;
                }
        } else {
                bool stray_quote = false;

                while (p < end && *p != ',' && *p != '\n') {
                        if (*p == '\r' && p + 1 < end && p[1] == '\n')
                                break;
                        if (*p == '"')
                                stray_quote = true;
                        out[n++] = *p++;
                }
                if (stray_quote) {
                        perr(ps, c->line, c->col,
                             "quote inside an unquoted cell (quote the whole cell and double the quote)");
                        *bad = true;
                }
        }
        out[n] = '\0';
        c->len = n;
        ps->arena_used += n + 1;

        if (p >= end) {
                ps->p = p;
                return END_ROW;
        }
        if (*p == ',') {
                ps->p = p + 1;
                return END_CELL;
        }
        if (*p == '\r')
                p++;
        /* *p == '\n' */
        p++;
        newline(ps, p);
        ps->p = p;
        return END_ROW;
}

/* Reads one row; the first max cells go to cells[], *ret_n counts them all.
 * Returns false when the text cannot be read further. */
static bool read_row(parser *ps, cell *cells, size_t max, size_t *ret_n, bool *bad) {
        size_t n = 0;
        cell scratch;

        for (;;) {
                cell *c = n < max ? &cells[n] : &scratch;
                cell_end e = read_cell(ps, c, bad);

                n++;
                if (e == END_FATAL) {
                        *ret_n = n;
                        return false;
                }
                if (e == END_ROW)
                        break;
        }
        *ret_n = n;
        return true;
}

/* Open addressing on FNV-1a. A slot holds index + 1 in its low bits (0 is
 * empty) and the top bits of the id's hash above them, so a probe rarely
 * has to visit a station (a cache miss) only to find another id there:
 * that keeps lookups of unknown sensors cheap. The table is indexed by the
 * low bits, where FNV-1a of ids differing only in their last digits
 * clusters, hence the final mix. */
#define SLOT_INDEX_BITS 20
#define SLOT_INDEX_MASK ((UINT32_C(1) << SLOT_INDEX_BITS) - 1)
_Static_assert(FH_REGISTRY_STATIONS_MAX < SLOT_INDEX_MASK, "station index must fit a slot");

static uint32_t id_hash(const char *s, size_t len) {
        uint32_t h = 2166136261u;

        for (size_t i = 0; i < len; i++) {
                h ^= (unsigned char)s[i];
                h *= 16777619u;
        }
        h ^= h >> 16;
        h *= 0x7feb352du;
        h ^= h >> 15;
        return h;
}

static uint32_t slot_tag(uint32_t h) {
        return h & ~SLOT_INDEX_MASK;
}

static size_t hash_size_for(size_t n) {
        size_t size = 16;

        while (size < n * 2)
                size *= 2;
        return size;
}

/* Index of the station with that id, or SIZE_MAX. */
static size_t hash_lookup(const uint32_t *tab, size_t mask, const fh_station *st, const char *id, size_t len) {
        uint32_t h = id_hash(id, len), tag = slot_tag(h);
        size_t i = h & mask;

        for (;;) {
                uint32_t slot = tab[i];

                if (slot == 0)
                        return SIZE_MAX;
                if (slot_tag(slot) == tag) {
                        const fh_station *s = &st[(slot & SLOT_INDEX_MASK) - 1];

                        if (s->id_len == len && memcmp(s->id, id, len) == 0)
                                return (size_t)(s - st);
                }
                i = (i + 1) & mask;
        }
}

/* For ids known to be unique: no comparisons. */
static void hash_insert(uint32_t *tab, size_t mask, const fh_station *s, size_t index) {
        uint32_t h = id_hash(s->id, s->id_len);
        size_t i = h & mask;

        while (tab[i] != 0)
                i = (i + 1) & mask;
        tab[i] = slot_tag(h) | ((uint32_t)index + 1);
}

static int station_cmp(const void *a, const void *b) {
        const fh_station *x = a, *y = b;

        return strcmp(x->id, y->id);
}

fh_registry *fh_registry_free(fh_registry *r) {
        registry *reg;

        if (!r)
                return NULL;
        reg = (registry *)r;
        free(r->columns);
        free(r->stations);
        free(r->hash);
        free(r->arena);
        free(reg->attr_block);
        free(reg);
        return NULL;
}

const fh_station *fh_registry_find(const fh_registry *r, const char *id, size_t len) {
        size_t i;

        if (!r || !id || len == 0 || len > FH_SENSOR_ID_MAX || !r->hash)
                return NULL;
        i = hash_lookup(r->hash, r->hash_mask, r->stations, id, len);
        return i == SIZE_MAX ? NULL : &r->stations[i];
}

int fh_registry_column(const fh_registry *r, const char *name, size_t len) {
        if (!r || !name)
                return -1;
        for (size_t i = 0; i < r->n_columns; i++) {
                const char *c = r->columns[i];

                if (strlen(c) == len && memcmp(c, name, len) == 0)
                        return (int)i;
        }
        return -1;
}

/* Column layout found in the header. */
typedef struct header {
        size_t n;
        int id, kind, name;
} header;

static void check_header(parser *ps, const cell *cells, size_t n, header *h) {
        char shown[64];

        h->n = n;
        h->id = h->kind = h->name = -1;
        for (size_t i = 0; i < n; i++) {
                const cell *c = &cells[i];
                int u = check_utf8(c->s, c->len);
                bool dup = false;

                if (u != 0) {
                        perr(ps, c->line, c->col, u > 0 ? "column name contains a NUL byte"
                                                        : "column name is not valid UTF-8");
                        continue;
                }
                if (c->len > FH_REGISTRY_CELL_MAX) {
                        perr(ps, c->line, c->col, "column name longer than %d bytes", FH_REGISTRY_CELL_MAX);
                        continue;
                }
                if (!fh_is_identifier(c->s, c->len)) {
                        perr(ps, c->line, c->col, "column name '%s' is not an identifier ([a-z][a-z0-9_]*)",
                             show(shown, c->s, c->len));
                        continue;
                }
                for (size_t j = 0; j < i; j++) {
                        if (cells[j].len == c->len && memcmp(cells[j].s, c->s, c->len) == 0) {
                                perr(ps, c->line, c->col, "duplicate column '%s' (first at %u:%u)",
                                     show(shown, c->s, c->len), cells[j].line, cells[j].col);
                                dup = true;
                                break;
                        }
                }
                if (dup)
                        continue;
                if (strcmp(c->s, "id") == 0)
                        h->id = (int)i;
                else if (strcmp(c->s, "kind") == 0)
                        h->kind = (int)i;
                else if (strcmp(c->s, "name") == 0)
                        h->name = (int)i;
        }
        if (h->id < 0)
                perr(ps, cells[0].line, 1, "missing required column 'id'");
        if (h->kind < 0)
                perr(ps, cells[0].line, 1, "missing required column 'kind'");
        if (h->name < 0)
                perr(ps, cells[0].line, 1, "missing required column 'name'");
}

/* Growable tables built while reading rows. */
typedef struct rows {
        fh_station *st;
        fh_attr *attrs;
        uint32_t *lines;   /* line of each row, for duplicate-id messages */
        size_t n;
        size_t cap;
        uint32_t *seen;    /* id hash over st[0..n), to find duplicates as they
                              come; sized for every row up front, it becomes
                              the registry's index after the sort */
        size_t seen_mask;
} rows;

static void rows_grow(rows *rs, size_t n_columns) {
        size_t cap = rs->cap ? rs->cap * 2 : 64;

        if (cap > FH_REGISTRY_STATIONS_MAX)
                cap = FH_REGISTRY_STATIONS_MAX;
        rs->st = fh_realloc(rs->st, cap * sizeof(*rs->st));
        rs->attrs = fh_realloc(rs->attrs, cap * n_columns * sizeof(*rs->attrs));
        rs->lines = fh_realloc(rs->lines, cap * sizeof(*rs->lines));
        rs->cap = cap;
}

/* Validates one row of the right width and appends it. */
static void add_row(parser *ps, rows *rs, const header *h, const cell *cells, uint32_t row_line) {
        char shown[64];
        fh_station *st;
        fh_attr *attrs;
        bool id_ok = false, cells_ok = true;

        if (rs->n == rs->cap)
                rows_grow(rs, h->n);
        st = &rs->st[rs->n];
        attrs = &rs->attrs[rs->n * h->n];
        memset(st, 0, sizeof(*st));

        for (size_t i = 0; i < h->n; i++) {
                const cell *c = &cells[i];
                fh_attr *a = &attrs[i];
                int u = check_utf8(c->s, c->len);

                a->present = c->len > 0;
                a->is_number = false;
                a->num = 0;
                a->str = c->s;
                a->len = c->len;
                if (u != 0) {
                        perr(ps, c->line, c->col, u > 0 ? "cell contains a NUL byte" : "cell is not valid UTF-8");
                        cells_ok = false;
                        continue;
                }
                if (c->len > FH_REGISTRY_CELL_MAX) {
                        perr(ps, c->line, c->col, "cell longer than %d bytes", FH_REGISTRY_CELL_MAX);
                        cells_ok = false;
                        continue;
                }
                /* id, kind and name are names, never quantities, even when
                 * they look like numbers ("0012"). */
                if (a->present && (int)i != h->id && (int)i != h->kind && (int)i != h->name)
                        a->is_number = parse_number(c->s, c->len, &a->num);
        }
        if (!cells_ok)
                return;

        if (h->id >= 0) {
                const cell *c = &cells[h->id];

                if (c->len == 0)
                        perr(ps, c->line, c->col, "empty id");
                else if (!valid_id(c->s, c->len))
                        perr(ps, c->line, c->col, "invalid id '%s' (1-%d characters of A-Z a-z 0-9 . _ : -)",
                             show(shown, c->s, c->len), FH_SENSOR_ID_MAX);
                else {
                        size_t first = hash_lookup(rs->seen, rs->seen_mask, rs->st, c->s, c->len);

                        if (first != SIZE_MAX)
                                perr(ps, c->line, c->col, "duplicate id '%s' (first on line %u)",
                                     c->s, (unsigned)rs->lines[first]);
                        else {
                                st->id = c->s;
                                st->id_len = c->len;
                                id_ok = true;
                        }
                }
        }
        if (h->kind >= 0) {
                const cell *c = &cells[h->kind];

                if (c->len == 0)
                        perr(ps, c->line, c->col, "empty kind (rain, water_level, landslide or bridge)");
                else if (fh_kind_from_string(c->s, c->len, &st->kind) < 0)
                        perr(ps, c->line, c->col, "unknown kind '%s' (rain, water_level, landslide or bridge)",
                             show(shown, c->s, c->len));
        }
        if (h->name >= 0) {
                const cell *c = &cells[h->name];

                if (c->len == 0)
                        perr(ps, c->line, c->col, "empty name");
                st->name = c->s;
                st->name_len = c->len;
        }

        /* Keep every row with a usable id, even one with other errors, so a
         * later duplicate still names its first line. */
        if (!id_ok)
                return;
        rs->lines[rs->n] = row_line;
        hash_insert(rs->seen, rs->seen_mask, st, rs->n);
        rs->n++;
}

/* Upper bounds from one pass: arena bytes (every cell's bytes plus one
 * NUL per cell, and a cell ends at a comma, a line break or the end) and
 * rows (a row ends at a line break or the end). */
static void scan_bounds(const char *text, size_t len, size_t *ret_arena, size_t *ret_rows) {
        size_t commas = 0, lines = 0;

        for (size_t i = 0; i < len; i++) {
                commas += text[i] == ',';
                lines += text[i] == '\n';
        }
        *ret_arena = len + commas + lines + 2;
        *ret_rows = lines + 1;
}

static bool sorted_by_id(const fh_station *st, size_t n) {
        for (size_t i = 1; i < n; i++)
                if (strcmp(st[i - 1].id, st[i].id) > 0)
                        return false;
        return true;
}

int fh_registry_parse(const char *file, const char *text, size_t len, fh_registry **ret, fh_diags *diags) {
        parser ps = { 0 };
        cell hdr_cells[FH_REGISTRY_COLUMNS_MAX + 1];
        cell *cells = NULL;
        header h = { 0 };
        rows rs = { 0 };
        registry *reg = NULL;
        size_t n, arena_size, rows_bound;
        bool bad = false;

        if (!text && len > 0)
                return -EINVAL;
        if (!text)
                text = "";

        ps.file = file ? file : "<stations>";
        ps.diags = diags;
        ps.p = text;
        ps.end = text + len;
        ps.line = 1;
        if (len >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0)
                ps.p += 3;  /* columns count from after the BOM, as editors show them */
        ps.line_start = ps.p;
        ps.content_end = ps.end;
        while (ps.content_end > ps.p && ps.content_end[-1] == '\n') {
                ps.content_end--;
                if (ps.content_end > ps.p && ps.content_end[-1] == '\r')
                        ps.content_end--;
        }
        scan_bounds(text, len, &arena_size, &rows_bound);
        ps.arena = fh_malloc(arena_size);

        if (ps.p >= ps.content_end) {
                perr(&ps, 1, 1, "missing header row (id,kind,name,...)");
                goto fail;
        }

        if (!read_row(&ps, hdr_cells, FH_ARRAY_SIZE(hdr_cells), &n, &bad))
                goto fail;
        if (n > FH_REGISTRY_COLUMNS_MAX) {
                perr(&ps, hdr_cells[FH_REGISTRY_COLUMNS_MAX].line, hdr_cells[FH_REGISTRY_COLUMNS_MAX].col,
                     "more than %d columns", FH_REGISTRY_COLUMNS_MAX);
                goto fail;
        }
        if (bad)
                goto fail;
        if (n == 1 && hdr_cells[0].len == 0 && !hdr_cells[0].quoted) {
                /* A blank first line: the header is missing, and reading on
                 * would only blame every row for it. */
                perr(&ps, 1, 1, "missing header row (id,kind,name,...)");
                goto fail;
        }
        check_header(&ps, hdr_cells, n, &h);

        cells = fh_malloc(h.n * sizeof(*cells));
        rs.seen_mask = hash_size_for(FH_MIN(rows_bound, (size_t)FH_REGISTRY_STATIONS_MAX)) - 1;
        rs.seen = fh_calloc(rs.seen_mask + 1, sizeof(*rs.seen));
        while (!ps.stop && ps.p < ps.content_end) {
                unsigned row_line = ps.line;
                bool ok;

                bad = false;
                ok = read_row(&ps, cells, h.n, &n, &bad);
                if (!ok)
                        break;
                if (bad)
                        continue;
                if (n == 1 && cells[0].len == 0 && !cells[0].quoted) {
                        perr(&ps, row_line, 1, "empty line (a row needs %zu cells)", h.n);
                        continue;
                }
                if (n != h.n) {
                        perr(&ps, row_line, 1, "row has %zu cells, the header has %zu", n, h.n);
                        continue;
                }
                if (rs.n == FH_REGISTRY_STATIONS_MAX) {
                        perr(&ps, row_line, 1, "more than %d stations", FH_REGISTRY_STATIONS_MAX);
                        break;
                }
                add_row(&ps, &rs, &h, cells, row_line);
        }
        cells = (free(cells), NULL);
        if (ps.n_errors > 0)
                goto fail;

        reg = fh_calloc(1, sizeof(*reg));
        reg->pub.n_columns = h.n;
        reg->pub.columns = fh_malloc(h.n * sizeof(char *));
        for (size_t i = 0; i < h.n; i++)
                reg->pub.columns[i] = (char *)hdr_cells[i].s;
        for (size_t i = 0; i < rs.n; i++) {
                rs.st[i].attrs = &rs.attrs[i * h.n];
                rs.st[i].index = (uint32_t)i;
        }
        /* A file kept in id order (the usual case) needs no sort and no
         * new index. Otherwise the duplicate table is renumbered rather than
         * rebuilt: that walks two small arrays instead of every id again. */
        if (!sorted_by_id(rs.st, rs.n)) {
                uint32_t *moved_to = rs.lines;

                qsort(rs.st, rs.n, sizeof(*rs.st), station_cmp);
                for (size_t i = 0; i < rs.n; i++) {
                        moved_to[rs.st[i].index] = (uint32_t)i;
                        rs.st[i].index = (uint32_t)i;
                }
                for (size_t i = 0; i <= rs.seen_mask; i++) {
                        uint32_t slot = rs.seen[i];

                        if (slot != 0)
                                rs.seen[i] = slot_tag(slot) | (moved_to[(slot & SLOT_INDEX_MASK) - 1] + 1);
                }
        }
        reg->pub.stations = rs.st;
        reg->pub.n_stations = rs.n;
        reg->pub.hash = rs.seen;
        reg->pub.hash_mask = rs.seen_mask;
        reg->pub.arena = ps.arena;
        reg->attr_block = rs.attrs;
        free(rs.lines);
        *ret = &reg->pub;
        return 0;

fail:
        free(cells);
        free(rs.st);
        free(rs.attrs);
        free(rs.lines);
        free(rs.seen);
        free(ps.arena);
        return -EINVAL;
}
