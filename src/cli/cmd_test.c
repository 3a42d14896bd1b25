/* `fenghuo test`: rule unit tests (docs/rules.md §8). A test file names a
 * rules directory and a registry, writes readings as compact series and
 * lists every alert event they must cause; the readings go through the same
 * engine as `replay`, and each difference is reported at the line of the
 * test file that expected otherwise. */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "fenghuo/reading.h"
#include "fenghuo/timeutil.h"
#include "cli.h"

/* Readings one test may generate: a typo like 5x1000000000 gets an error,
 * not an hour of work. */
#define TEST_READINGS_MAX 1000000

typedef struct tfile {
        const char *path;
        char *dir;                 /* of the test file: paths in it are relative to it */
        yaml_document_t doc;
        fh_diags *diags;
        size_t errors0;
        /* from the top level */
        const yaml_node_t *rules, *stations, *tests;
        fh_engine_config cfg;
} tfile;

/* An expected event. */
typedef struct want {
        unsigned line;
        int64_t at;
        const char *rule, *sensor;  /* into the document */
        fh_event event;
        fh_level level;
        bool has_value;
        double value;               /* NaN for null */
        const char *message;        /* NULL: not checked */
        bool matched;
} want;

typedef struct got {
        int64_t at;
        char *rule, *sensor;
        fh_event event;
        fh_level level;
        double value;
        char *message;
        bool matched;
} got;

typedef struct got_list {
        const fh_engine *e;
        got *v;
        size_t n, cap;
} got_list;

typedef struct feed_item {
        fh_reading r;
        size_t order;              /* written order, for a stable sort */
} feed_item;

/* ---- YAML helpers ---- */

static yaml_node_t *node(tfile *f, int idx) {
        return yaml_document_get_node(&f->doc, idx);
}

static unsigned line_of(const yaml_node_t *n) {
        return (unsigned) n->start_mark.line + 1;
}

__attribute__((format(printf, 3, 4)))
static void err(tfile *f, const yaml_node_t *n, const char *fmt, ...) {
        char msg[1024];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        fh_diags_error(f->diags, f->path, n ? line_of(n) : 0, n ? (unsigned) n->start_mark.column + 1 : 0, "%s", msg);
}

static const char *scalar(tfile *f, const yaml_node_t *n, const char *what) {
        if (n->type != YAML_SCALAR_NODE) {
                err(f, n, "%s must be a single value", what);
                return NULL;
        }
        return (const char *) n->data.scalar.value;
}

static bool is_null(const yaml_node_t *n) {
        const char *s = (const char *) n->data.scalar.value;
        return n->type == YAML_SCALAR_NODE && n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
               (!strcmp(s, "null") || !strcmp(s, "~") || !*s);
}

static bool parse_number(const char *s, size_t len, double *ret) {
        char tmp[64], *end;

        if (len == 0 || len >= sizeof(tmp))
                return false;
        memcpy(tmp, s, len);
        tmp[len] = 0;
        /* strtod also reads hex, inf and nan; a series value is decimal. */
        for (size_t i = 0; i < len; i++)
                if (!strchr("0123456789+-.eE", tmp[i]))
                        return false;
        errno = 0;
        double v = strtod(tmp, &end);
        if (*end || errno || !isfinite(v))
                return false;
        *ret = v;
        return true;
}

/* Digits after the point, or -1 with an exponent (no rounding then). */
static int decimals(const char *s, size_t len) {
        const char *dot = memchr(s, '.', len);

        for (size_t i = 0; i < len; i++)
                if (s[i] == 'e' || s[i] == 'E')
                        return -1;
        return dot ? (int) (len - (size_t) (dot + 1 - s)) : 0;
}

/* "4h5m": durations written one after another add up, so an expected
 * event can be placed at an exact minute without doing arithmetic. */
static int offset_parse(const char *s, int64_t *ret) {
        int64_t total = 0, d;
        size_t i = 0, n = strlen(s);

        if (n == 0)
                return -EINVAL;
        while (i < n) {
                size_t j = i;
                while (j < n && s[j] >= '0' && s[j] <= '9')
                        j++;
                if (j == i || j == n)
                        return -EINVAL;
                if (fh_duration_parse(s + i, j + 1 - i, &d) < 0)
                        return -EINVAL;
                total += d;
                i = j + 1;
        }
        *ret = total;
        return 0;
}

/* A time: RFC 3339, or a duration after the test's start ("55m"). */
static bool parse_time(tfile *f, const yaml_node_t *n, int64_t start, const char *what, int64_t *ret) {
        const char *s = scalar(f, n, what);
        int64_t d;

        if (!s)
                return false;
        if (fh_duration_parse(s, strlen(s), &d) == 0 || offset_parse(s, &d) == 0) {
                if (start == FH_TIME_NONE) {
                        err(f, n, "%s '%s' is relative to 'start', and this test has none", what, s);
                        return false;
                }
                *ret = start + d;
                return true;
        }
        if (fh_time_parse_rfc3339(s, strlen(s), ret, NULL) == 0)
                return true;
        err(f, n, "%s must be an RFC 3339 time like 2023-07-30T14:05:00+08:00 or a duration after 'start' like 55m or 2h5m, got '%s'",
            what, s);
        return false;
}

/* "a/b/../c" -> "a/c", lexically: the path appears in every message about
 * a rule file, and engineers compare it with what they typed. */
static void path_tidy(char *p) {
        char *seg[256];
        size_t n = 0;
        bool abs = p[0] == '/';
        char *save = NULL, *copy = strdup(p);

        if (!copy)
                fh_oom();
        for (char *t = strtok_r(copy, "/", &save); t; t = strtok_r(NULL, "/", &save)) {
                if (!strcmp(t, "."))
                        continue;
                if (!strcmp(t, "..") && n > 0 && strcmp(seg[n - 1], ".."))
                        n--;
                else if (n < FH_ARRAY_SIZE(seg))
                        seg[n++] = t;
                else {
                        free(copy);
                        return;
                }
        }
        char *o = p;
        if (abs)
                *o++ = '/';
        for (size_t i = 0; i < n; i++) {
                size_t l = strlen(seg[i]);
                if (i)
                        *o++ = '/';
                memmove(o, seg[i], l);
                o += l;
        }
        if (o == p)
                *o++ = '.';
        *o = 0;
        free(copy);
}

static char *path_in(const tfile *f, const char *rel) {
        char *p;

        if (rel[0] == '/' || !strcmp(f->dir, "."))
                p = strdup(rel);
        else if (asprintf(&p, "%s/%s", f->dir, rel) < 0)
                p = NULL;
        if (!p)
                fh_oom();
        path_tidy(p);
        return p;
}

/* "no rule 'rainstrom' (did you mean 'rainstorm'?)" */
static void err_no_rule(tfile *f, const yaml_node_t *n, const fh_ruleset *rs, const char *id) {
        size_t best = SIZE_MAX, bi = 0;

        for (size_t i = 0; i < rs->n_rules; i++) {
                size_t d = fh_edit_distance(id, strlen(id), rs->rules[i].id, strlen(rs->rules[i].id));
                if (d < best)
                        best = d, bi = i;
        }
        if (best <= 2)
                err(f, n, "no rule '%s' in the rules directory (did you mean '%s'?)", id, rs->rules[bi].id);
        else
                err(f, n, "no rule '%s' in the rules directory", id);
}

/* ---- the readings ---- */

typedef struct feed {
        feed_item *v;
        size_t n, cap, n_series;
} feed;

static feed_item *feed_add(feed *fd) {
        if (fd->n == fd->cap) {
                fd->cap = fd->cap ? 2 * fd->cap : 64;
                fd->v = realloc(fd->v, fd->cap * sizeof(*fd->v));
                if (!fd->v)
                        fh_oom();
        }
        feed_item *it = &fd->v[fd->n];
        memset(it, 0, sizeof(*it));
        it->order = fd->n++;
        return it;
}

/* One value of a series at ts: joins the reading of the same sensor and
 * time when another series already made it, so `G1 rain_mm` and `G1 temp`
 * arrive as one reading with both values. */
static bool series_point(tfile *f, const yaml_node_t *n, feed *fd, const char *sensor, const char *field,
                         int64_t ts, double v) {
        feed_item *it = NULL;

        for (size_t i = 0; i < fd->n; i++)
                if (fd->v[i].r.ts_ms == ts && !strcmp(fd->v[i].r.sensor, sensor)) {
                        it = &fd->v[i];
                        break;
                }
        if (!it) {
                if (fd->n >= TEST_READINGS_MAX) {
                        err(f, n, "more than %d readings in one test", TEST_READINGS_MAX);
                        return false;
                }
                it = feed_add(fd);
                it->r.sensor_len = (uint8_t) strlen(sensor);
                memcpy(it->r.sensor, sensor, it->r.sensor_len + 1);
                it->r.ts_ms = ts;
        }
        for (unsigned i = 0; i < it->r.n_values; i++)
                if (!strcmp(it->r.values[i].name, field)) {
                        err(f, n, "%s %s has two values at the same time", sensor, field);
                        return false;
                }
        if (it->r.n_values >= FH_VALUES_MAX) {
                err(f, n, "more than %d fields in one reading", FH_VALUES_MAX);
                return false;
        }
        fh_value *val = &it->r.values[it->r.n_values++];
        val->name_len = (uint8_t) strlen(field);
        memcpy(val->name, field, val->name_len + 1);
        val->v = v;
        return true;
}

/* "SENSOR FIELD: items". Items, separated by spaces, each take one interval:
 *   V        one reading of V
 *   VxN      N readings of V
 *   A+BxN    N readings A, A+B, ..., A+(N-1)B (A-BxN counts down)
 *   _  _xN   one / N intervals without a reading */
static bool parse_series(tfile *f, const yaml_node_t *k, const yaml_node_t *v, feed *fd, int64_t start,
                         int64_t interval) {
        const char *key = scalar(f, k, "a series name"), *s;
        char sensor[FH_SENSOR_ID_MAX + 1], field[FH_FIELD_NAME_MAX + 1];
        size_t sl, fl;

        if (!key)
                return false;
        sl = strcspn(key, " \t");
        const char *fp = key + sl + strspn(key + sl, " \t");
        fl = strcspn(fp, " \t");
        if (sl == 0 || sl > FH_SENSOR_ID_MAX || fl == 0 || fp[fl] != 0 || !fh_is_identifier(fp, fl) ||
            fl > FH_FIELD_NAME_MAX) {
                err(f, k, "a series is named 'SENSOR field', like 'MY-RG-0001 rain_mm', got '%s'", key);
                return false;
        }
        memcpy(sensor, key, sl);
        sensor[sl] = 0;
        memcpy(field, fp, fl);
        field[fl] = 0;
        if (start == FH_TIME_NONE) {
                err(f, k, "a test with series needs 'start', the time of their first item");
                return false;
        }
        if (!(s = scalar(f, v, "a series")))
                return false;

        int64_t t = start;
        size_t total = 0;
        for (const char *p = s;;) {
                p += strspn(p, " \t\n");
                if (!*p)
                        break;
                size_t len = strcspn(p, " \t\n");
                const char *x = memchr(p, 'x', len);
                size_t base_len = x ? (size_t) (x - p) : len;
                unsigned long long count = 1;
                double a = 0, b = 0;
                bool skip = false;

                if (x) {
                        char *end;
                        errno = 0;
                        count = strtoull(x + 1, &end, 10);
                        if (end != p + len || x + 1 == end || errno || count == 0 || x[1] == '-' || x[1] == '+') {
                                err(f, v, "bad series item '%.*s': the count after 'x' must be a whole number from 1",
                                    (int) len, p);
                                return false;
                        }
                }
                if (base_len == 1 && p[0] == '_')
                        skip = true;
                else {
                        /* The step's sign is the first '+' or '-' that is not at
                         * the start and not in an exponent. */
                        size_t split = base_len;
                        for (size_t i = 1; i < base_len; i++)
                                if ((p[i] == '+' || p[i] == '-') && p[i - 1] != 'e' && p[i - 1] != 'E') {
                                        split = i;
                                        break;
                                }
                        if (!parse_number(p, split, &a) ||
                            (split < base_len && (!x || !parse_number(p + split, base_len - split, &b)))) {
                                err(f, v, "bad series item '%.*s': write V, VxN, A+BxN, A-BxN, _ or _xN", (int) len, p);
                                return false;
                        }
                }
                /* 212 + 15 * 0.1 is 213.50000000000003 in binary; the user
                 * wrote tenths and means 213.5, as a JSON reading would say. */
                int dec = skip ? 0 : decimals(p, base_len);
                double scale = dec >= 0 && dec <= 9 ? pow(10, dec) : 0;
                if (count > TEST_READINGS_MAX || (total += count) > TEST_READINGS_MAX) {
                        err(f, v, "more than %d readings in one series", TEST_READINGS_MAX);
                        return false;
                }
                for (unsigned long long i = 0; i < count; i++, t += interval) {
                        double val = a + (double) i * b;
                        if (scale > 0 && fabs(val) < 1e9)
                                val = round(val * scale) / scale;
                        if (!skip && !series_point(f, v, fd, sensor, field, t, val))
                                return false;
                }
                p += len;
        }
        return true;
}

static int cmp_item(const void *pa, const void *pb) {
        const feed_item *a = pa, *b = pb;

        if (a->r.ts_ms != b->r.ts_ms)
                return a->r.ts_ms < b->r.ts_ms ? -1 : 1;
        return a->order < b->order ? -1 : a->order > b->order;
}

/* ---- what the engine said ---- */

static void on_alert(void *userdata, const fh_alert *a) {
        got_list *l = userdata;
        fh_buf m = FH_BUF_NULL;

        if (l->n == l->cap) {
                l->cap = l->cap ? 2 * l->cap : 16;
                l->v = realloc(l->v, l->cap * sizeof(*l->v));
                if (!l->v)
                        fh_oom();
        }
        fh_alert_message(l->e, a, &m);
        fh_buf_putc(&m, 0);
        l->v[l->n++] = (got) {
                .at = a->ts_ms,
                .rule = strdup(a->rule->id),
                .sensor = strdup(a->station->id),
                .event = a->event,
                .level = a->level,
                .value = a->value,
                .message = m.data,
        };
        if (!l->v[l->n - 1].rule || !l->v[l->n - 1].sensor)
                fh_oom();
}

static void got_list_free(got_list *l) {
        for (size_t i = 0; i < l->n; i++) {
                free(l->v[i].rule);
                free(l->v[i].sensor);
                free(l->v[i].message);
        }
        free(l->v);
}

static bool values_equal(double want_v, double got_v) {
        if (isnan(want_v) || isnan(got_v))
                return isnan(want_v) && isnan(got_v);
        return fabs(want_v - got_v) <= 1e-9 * FH_MAX(1.0, FH_MAX(fabs(want_v), fabs(got_v)));
}

static void fmt_value(double v, char *buf, size_t n) {
        if (isnan(v))
                snprintf(buf, n, "null");
        else
                snprintf(buf, n, "%.10g", v);
}

/* ---- one test ---- */

static const char *const WANT_KEYS[] = { "at", "rule", "sensor", "event", "level", "value", "message" };

static bool parse_want(tfile *f, const yaml_node_t *n, int64_t start, const fh_engine *e, want *w) {
        const yaml_node_t *v[FH_ARRAY_SIZE(WANT_KEYS)] = { 0 };
        bool ok = true;

        memset(w, 0, sizeof(*w));
        w->line = line_of(n);
        if (n->type != YAML_MAPPING_NODE) {
                err(f, n, "an expected alert is a mapping: {at: 55m, rule: ..., sensor: ..., event: raised, level: orange, value: 50}");
                return false;
        }
        for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
                const yaml_node_t *k = node(f, p->key);
                const char *ks = k->type == YAML_SCALAR_NODE ? (const char *) k->data.scalar.value : "";
                size_t i;
                for (i = 0; i < FH_ARRAY_SIZE(WANT_KEYS); i++)
                        if (!strcmp(ks, WANT_KEYS[i]))
                                break;
                if (i == FH_ARRAY_SIZE(WANT_KEYS)) {
                        err(f, k, "unknown key '%s' in an expected alert (at, rule, sensor, event, level, value, message)", ks);
                        ok = false;
                } else
                        v[i] = node(f, p->value);
        }
        for (size_t i = 0; i < 5; i++)
                if (!v[i]) {
                        err(f, n, "an expected alert needs '%s'", WANT_KEYS[i]);
                        ok = false;
                }
        if (!ok)
                return false;
        if (!parse_time(f, v[0], start, "'at'", &w->at))
                ok = false;
        if ((w->rule = scalar(f, v[1], "'rule'")) && !fh_ruleset_find(fh_engine_rules(e), w->rule)) {
                err_no_rule(f, v[1], fh_engine_rules(e), w->rule);
                ok = false;
        }
        if ((w->sensor = scalar(f, v[2], "'sensor'")) &&
            !fh_registry_find(fh_engine_registry(e), w->sensor, strlen(w->sensor))) {
                err(f, v[2], "no station '%s' in the registry", w->sensor);
                ok = false;
        }
        const char *ev = scalar(f, v[3], "'event'");
        if (ev) {
                int i;
                for (i = 0; i < FH_EVENT__MAX; i++)
                        if (!strcmp(ev, fh_event_name((fh_event) i)))
                                break;
                if (i == FH_EVENT__MAX) {
                        err(f, v[3], "'event' is raised, escalated, deescalated or cleared, got '%s'", ev);
                        ok = false;
                } else
                        w->event = (fh_event) i;
        }
        const char *lv = scalar(f, v[4], "'level'");
        if (lv && fh_level_from_string(lv, strlen(lv), &w->level) < 0) {
                err(f, v[4], "'level' is red, orange, yellow, blue or none, got '%s'", lv);
                ok = false;
        }
        if (v[5]) {
                const char *s = scalar(f, v[5], "'value'");
                w->has_value = true;
                if (s && is_null(v[5]))
                        w->value = NAN;
                else if (s && !parse_number(s, strlen(s), &w->value)) {
                        err(f, v[5], "'value' must be a number or null, got '%s'", s);
                        ok = false;
                }
        }
        if (v[6] && !(w->message = scalar(f, v[6], "'message'")))
                ok = false;
        return ok;
}

static fh_registry *load_stations(tfile *f, fh_diags *diags) {
        const char *s = scalar(f, f->stations, "'stations'");
        fh_registry *reg = NULL;

        if (!s)
                return NULL;
        /* A block of CSV text is the registry itself; one line is a path. */
        if (strchr(s, '\n')) {
                char *name;
                if (asprintf(&name, "%s (stations)", f->path) < 0)
                        fh_oom();
                if (fh_registry_parse(name, s, strlen(s), &reg, diags) < 0)
                        reg = NULL;
                free(name);
        } else {
                char *p = path_in(f, s);
                if (fh_load_registry(p, &reg, diags) < 0)
                        reg = NULL;
                free(p);
        }
        return reg;
}

/* Each test gets a fresh engine; run_file() loads one first so that
 * errors and warnings are said once per file, not once per test. */
static fh_engine *load_engine(tfile *f, fh_diags *diags) {
        const char *s = scalar(f, f->rules, "'rules'");
        fh_ruleset *rs = NULL;
        fh_registry *reg;
        fh_engine *e = NULL;

        if (!s)
                return NULL;
        char *dir = path_in(f, s);
        int r = fh_load_rules(dir, &rs, diags);
        free(dir);
        reg = load_stations(f, diags);
        if (r < 0 || !reg) {
                fh_ruleset_free(rs);
                fh_registry_free(reg);
                return NULL;
        }
        if (fh_engine_new(&e, rs, reg, &f->cfg, diags) < 0)
                return NULL;
        return e;
}

static bool in_only(const yaml_node_t *only, tfile *f, const char *rule) {
        if (!only)
                return true;
        for (yaml_node_item_t *i = only->data.sequence.items.start; i < only->data.sequence.items.top; i++) {
                const yaml_node_t *n = node(f, *i);
                if (n->type == YAML_SCALAR_NODE && !strcmp((const char *) n->data.scalar.value, rule))
                        return true;
        }
        return false;
}

static const char *const TEST_KEYS[] = { "name", "start", "interval", "input", "readings", "only", "alerts" };
enum { T_NAME, T_START, T_INTERVAL, T_INPUT, T_READINGS, T_ONLY, T_ALERTS, T__MAX };

/* Runs one test. 1 passed, 0 failed, -1 invalid (errors in diags). */
static int run_test(tfile *f, const yaml_node_t *t, size_t index) {
        const yaml_node_t *v[T__MAX] = { 0 };
        int64_t start = FH_TIME_NONE, interval = 5 * 60000;
        fh_engine *e = NULL;
        feed fd = { 0 };
        want *w = NULL;
        size_t n_want = 0;
        got_list g = { 0 };
        int result = -1;
        char name[256];
        size_t errors0 = f->diags->n_errors;

        snprintf(name, sizeof(name), "test %zu", index + 1);
        if (t->type != YAML_MAPPING_NODE) {
                err(f, t, "a test is a mapping with name, start, input and alerts");
                return -1;
        }
        for (yaml_node_pair_t *p = t->data.mapping.pairs.start; p < t->data.mapping.pairs.top; p++) {
                const yaml_node_t *k = node(f, p->key);
                const char *ks = k->type == YAML_SCALAR_NODE ? (const char *) k->data.scalar.value : "";
                size_t i;
                for (i = 0; i < T__MAX; i++)
                        if (!strcmp(ks, TEST_KEYS[i]))
                                break;
                if (i == T__MAX)
                        err(f, k, "unknown key '%s' in a test (name, start, interval, input, readings, only, alerts)", ks);
                else if (v[i])
                        err(f, k, "'%s' given twice", ks);
                else
                        v[i] = node(f, p->value);
        }
        if (v[T_NAME]) {
                const char *s = scalar(f, v[T_NAME], "'name'");
                if (s)
                        snprintf(name, sizeof(name), "%s", s);
        }
        if (!v[T_ALERTS])
                err(f, t, "a test needs 'alerts', every alert event its input causes ([] for none)");
        else if (v[T_ALERTS]->type != YAML_SEQUENCE_NODE)
                err(f, v[T_ALERTS], "'alerts' must be a list");
        if (!v[T_INPUT] && !v[T_READINGS])
                err(f, t, "a test needs 'input' (series) or 'readings' (JSON lines)");
        if (v[T_START] && !parse_time(f, v[T_START], FH_TIME_NONE, "'start'", &start))
                start = FH_TIME_NONE;
        if (v[T_INTERVAL]) {
                const char *s = scalar(f, v[T_INTERVAL], "'interval'");
                if (s && (fh_duration_parse(s, strlen(s), &interval) < 0 || interval <= 0))
                        err(f, v[T_INTERVAL], "'interval' must be a positive duration like 5m, got '%s'", s);
        }
        if (v[T_ONLY] && v[T_ONLY]->type != YAML_SEQUENCE_NODE)
                err(f, v[T_ONLY], "'only' must be a list of rule ids");

        {
                fh_diags quiet = FH_DIAGS_NULL;
                e = load_engine(f, &quiet);
                fh_diags_clear(&quiet);
                if (!e) {
                        err(f, t, "the rules or stations did not load");
                        return -1;
                }
        }
        if (v[T_ONLY])
                for (yaml_node_item_t *i = v[T_ONLY]->data.sequence.items.start; i < v[T_ONLY]->data.sequence.items.top; i++) {
                        const yaml_node_t *n = node(f, *i);
                        const char *s = scalar(f, n, "a rule id in 'only'");
                        if (s && !fh_ruleset_find(fh_engine_rules(e), s))
                                err_no_rule(f, n, fh_engine_rules(e), s);
                }

        if (v[T_INPUT]) {
                if (v[T_INPUT]->type != YAML_MAPPING_NODE)
                        err(f, v[T_INPUT], "'input' maps 'SENSOR field' to a series, like 'MY-RG-0001 rain_mm: 5x12'");
                else
                        for (yaml_node_pair_t *p = v[T_INPUT]->data.mapping.pairs.start;
                             p < v[T_INPUT]->data.mapping.pairs.top; p++)
                                if (!parse_series(f, node(f, p->key), node(f, p->value), &fd, start, interval))
                                        break;
        }
        /* Series come in time order; `readings` keep the order they are
         * written in (a late reading can be tested) and go before the
         * series readings that are later than them. */
        if (fd.n)
                qsort(fd.v, fd.n, sizeof(*fd.v), cmp_item);
        fd.n_series = fd.n;
        if (v[T_READINGS]) {
                if (v[T_READINGS]->type != YAML_SEQUENCE_NODE)
                        err(f, v[T_READINGS], "'readings' must be a list of readings as JSON, one per item");
                else
                        for (yaml_node_item_t *i = v[T_READINGS]->data.sequence.items.start;
                             i < v[T_READINGS]->data.sequence.items.top; i++) {
                                const yaml_node_t *n = node(f, *i);
                                const char *s = scalar(f, n, "a reading");
                                char why[256];
                                if (!s)
                                        continue;
                                feed_item *it = feed_add(&fd);
                                if (fh_reading_parse(s, strlen(s), &it->r, why, sizeof(why)) != FH_REJECT_NONE) {
                                        err(f, n, "not a reading: %s", why);
                                        fd.n--;
                                }
                        }
        }
        if (v[T_ALERTS] && v[T_ALERTS]->type == YAML_SEQUENCE_NODE) {
                size_t cap = (size_t) (v[T_ALERTS]->data.sequence.items.top - v[T_ALERTS]->data.sequence.items.start);
                w = calloc(cap + 1, sizeof(*w));
                if (!w)
                        fh_oom();
                for (yaml_node_item_t *i = v[T_ALERTS]->data.sequence.items.start; i < v[T_ALERTS]->data.sequence.items.top; i++)
                        if (parse_want(f, node(f, *i), start, e, &w[n_want]))
                                n_want++;
        }
        if (f->diags->n_errors > errors0)
                goto out;

        g.e = e;
        fh_engine_set_alert_cb(e, on_alert, &g);
        {
                size_t a = 0, b = fd.n_series;
                while (a < fd.n_series || b < fd.n) {
                        const fh_reading *r;
                        if (b < fd.n && (a == fd.n_series || fd.v[b].r.ts_ms <= fd.v[a].r.ts_ms))
                                r = &fd.v[b++].r;
                        else
                                r = &fd.v[a++].r;
                        fh_outcome o = fh_engine_ingest(e, r);
                        if (o == FH_OUTCOME_UNKNOWN_SENSOR) {
                                err(f, v[T_INPUT] ? v[T_INPUT] : v[T_READINGS], "no station '%s' in the registry", r->sensor);
                                goto out;
                        }
                        if (fh_outcome_reject(o) != FH_REJECT_NONE) {
                                char why[256];
                                fh_engine_explain(e, r, o, why, sizeof(why));
                                err(f, v[T_INPUT] ? v[T_INPUT] : v[T_READINGS], "a reading is rejected (%s): %s",
                                    fh_reject_name(fh_outcome_reject(o)), why);
                                goto out;
                        }
                }
        }

        /* Match by (time, rule, sensor): the order of events at one time
         * is the engine's business, what they are is the test's. */
        result = 1;
        int tz = f->cfg.tz_offset_min;
        for (size_t i = 0; i < n_want; i++) {
                want *x = &w[i];
                got *m = NULL;
                char ts[FH_TIME_RFC3339_MAX];
                fh_time_format_rfc3339(x->at, tz, ts);
                for (size_t j = 0; j < g.n && !m; j++)
                        if (!g.v[j].matched && g.v[j].at == x->at && !strcmp(g.v[j].rule, x->rule) &&
                            !strcmp(g.v[j].sensor, x->sensor))
                                m = &g.v[j];
                if (!m) {
                        printf("%s:%u: %s: at %s expected %s %s %s %s, got nothing\n", f->path, x->line, name, ts,
                               x->rule, x->sensor, fh_event_name(x->event), fh_level_name(x->level));
                        result = 0;
                        continue;
                }
                m->matched = true;
                if (m->event != x->event || m->level != x->level)
                        printf("%s:%u: %s: at %s expected %s %s %s %s, got %s %s\n", f->path, x->line, name, ts,
                               x->rule, x->sensor, fh_event_name(x->event), fh_level_name(x->level),
                               fh_event_name(m->event), fh_level_name(m->level));
                else if (x->has_value && !values_equal(x->value, m->value)) {
                        char a[32], b[32];
                        fmt_value(x->value, a, sizeof(a));
                        fmt_value(m->value, b, sizeof(b));
                        printf("%s:%u: %s: at %s expected %s %s %s %s with value %s, got value %s\n", f->path, x->line,
                               name, ts, x->rule, x->sensor, fh_event_name(x->event), fh_level_name(x->level), a, b);
                } else if (x->message && strcmp(x->message, m->message))
                        printf("%s:%u: %s: at %s expected %s %s %s %s with message \"%s\", got \"%s\"\n", f->path,
                               x->line, name, ts, x->rule, x->sensor, fh_event_name(x->event),
                               fh_level_name(x->level), x->message, m->message);
                else
                        continue;
                result = 0;
        }
        for (size_t j = 0; j < g.n; j++) {
                got *m = &g.v[j];
                char ts[FH_TIME_RFC3339_MAX], val[32];
                if (m->matched || !in_only(v[T_ONLY], f, m->rule))
                        continue;
                fh_time_format_rfc3339(m->at, tz, ts);
                fmt_value(m->value, val, sizeof(val));
                printf("%s:%u: %s: at %s got %s %s %s %s (value %s), which 'alerts' does not list\n", f->path,
                       line_of(v[T_ALERTS]), name, ts, m->rule, m->sensor, fh_event_name(m->event),
                       fh_level_name(m->level), val);
                result = 0;
        }
out:
        got_list_free(&g);
        free(w);
        free(fd.v);
        fh_engine_free(e);
        return result;
}

/* ---- one file ---- */

typedef struct counts {
        size_t tests, passed, failed, invalid_files, failed_files;
} counts;

static const char *const TOP_KEYS[] = { "rules", "stations", "tz", "tick", "lateness", "tests" };

static void run_file(const char *path, counts *c) {
        fh_engine_config def = FH_ENGINE_CONFIG_DEFAULT;
        fh_diags diags = FH_DIAGS_NULL;
        tfile f = { .path = path, .diags = &diags, .cfg = def };
        yaml_parser_t parser;
        char *text = NULL;
        size_t len, passed = 0, failed = 0;
        bool loaded = false;
        int r;

        const char *slash = strrchr(path, '/');
        f.dir = slash ? strndup(path, (size_t) (slash - path)) : strdup(".");
        if (!f.dir)
                fh_oom();
        if (slash == path) {
                free(f.dir);
                f.dir = strdup("/");
        }
        r = fh_read_file(path, FH_RULE_FILE_MAX, &text, &len);
        if (r < 0) {
                fh_diags_error(&diags, path, 0, 0, "cannot read test file: %s",
                               r == -EFBIG ? "larger than 4 MiB" : strerror(-r));
                goto out;
        }
        if (!yaml_parser_initialize(&parser))
                fh_oom();
        yaml_parser_set_input_string(&parser, (const unsigned char *) text, len);
        if (!yaml_parser_load(&parser, &f.doc)) {
                fh_diags_error(&diags, path, (unsigned) parser.problem_mark.line + 1,
                               (unsigned) parser.problem_mark.column + 1, "invalid YAML: %s",
                               parser.problem ? parser.problem : "syntax error");
                yaml_parser_delete(&parser);
                goto out;
        }
        yaml_parser_delete(&parser);
        loaded = true;

        const yaml_node_t *root = yaml_document_get_root_node(&f.doc);
        if (!root || root->type != YAML_MAPPING_NODE) {
                fh_diags_error(&diags, path, root ? line_of(root) : 0, 0,
                               "a test file is a mapping with 'rules', 'stations' and 'tests'");
                goto out;
        }
        for (yaml_node_pair_t *p = root->data.mapping.pairs.start; p < root->data.mapping.pairs.top; p++) {
                const yaml_node_t *k = node(&f, p->key), *v = node(&f, p->value);
                const char *ks = k->type == YAML_SCALAR_NODE ? (const char *) k->data.scalar.value : "";
                const char *s;
                if (!strcmp(ks, "rules"))
                        f.rules = v;
                else if (!strcmp(ks, "stations"))
                        f.stations = v;
                else if (!strcmp(ks, "tests"))
                        f.tests = v;
                else if (!strcmp(ks, "tz")) {
                        if ((s = scalar(&f, v, "'tz'")) && fh_offset_parse(s, strlen(s), &f.cfg.tz_offset_min) < 0)
                                err(&f, v, "'tz' must be an offset like +08:00, got '%s'", s);
                } else if (!strcmp(ks, "tick")) {
                        if ((s = scalar(&f, v, "'tick'")) &&
                            (fh_duration_parse(s, strlen(s), &f.cfg.tick_ms) < 0 || f.cfg.tick_ms <= 0))
                                err(&f, v, "'tick' must be a positive duration like 60s, got '%s'", s);
                } else if (!strcmp(ks, "lateness")) {
                        if ((s = scalar(&f, v, "'lateness'")) && fh_duration_parse(s, strlen(s), &f.cfg.lateness_ms) < 0)
                                err(&f, v, "'lateness' must be a duration like 1h, got '%s'", s);
                } else {
                        size_t best = SIZE_MAX, bi = 0;
                        for (size_t i = 0; i < FH_ARRAY_SIZE(TOP_KEYS); i++) {
                                size_t d = fh_edit_distance(ks, strlen(ks), TOP_KEYS[i], strlen(TOP_KEYS[i]));
                                if (d < best)
                                        best = d, bi = i;
                        }
                        if (best <= 2)
                                err(&f, k, "unknown key '%s' (did you mean '%s'?)", ks, TOP_KEYS[bi]);
                        else
                                err(&f, k, "unknown key '%s' (rules, stations, tz, tick, lateness, tests)", ks);
                }
        }
        if (!f.rules)
                err(&f, root, "a test file needs 'rules', the rules directory (relative to the test file)");
        if (!f.stations)
                err(&f, root, "a test file needs 'stations', a registry file (relative to the test file) or CSV text");
        if (!f.tests || f.tests->type != YAML_SEQUENCE_NODE || f.tests->data.sequence.items.top == f.tests->data.sequence.items.start)
                err(&f, f.tests ? f.tests : root, "a test file needs 'tests', a list of at least one test");
        if (diags.n_errors)
                goto out;
        fh_engine *probe = load_engine(&f, &diags);
        if (!probe)
                goto out;
        fh_engine_free(probe);

        size_t i = 0;
        for (yaml_node_item_t *it = f.tests->data.sequence.items.start; it < f.tests->data.sequence.items.top; it++, i++) {
                int k = run_test(&f, node(&f, *it), i);
                if (k > 0)
                        passed++;
                else if (k == 0)
                        failed++;
        }
out:
        fflush(stdout);
        /* Warnings (a rule that applies to no station of a small test
         * registry) are `check`'s business: here they would be noise. */
        if (diags.n_errors) {
                fh_diags_sort(&diags);
                fh_print_diags(&diags);
        }
        c->tests += passed + failed;
        c->passed += passed;
        c->failed += failed;
        if (diags.n_errors) {
                printf("%s: invalid (%zu error%s)\n", path, diags.n_errors, diags.n_errors == 1 ? "" : "s");
                c->invalid_files++;
        } else if (failed) {
                printf("%s: %zu of %zu tests failed\n", path, failed, passed + failed);
                c->failed_files++;
        } else
                printf("%s: %zu test%s passed\n", path, passed, passed == 1 ? "" : "s");
        fh_diags_clear(&diags);
        if (loaded)
                yaml_document_delete(&f.doc);
        free(text);
        free(f.dir);
}

static void usage(FILE *f) {
        fputs("usage: fenghuo test FILE...\n"
              "Runs rule unit tests: each FILE names a rules directory and a station\n"
              "registry, gives readings as series and lists every alert event they must\n"
              "cause (docs/rules.md, section 8). Each difference is printed as\n"
              "file:line: what was expected and what happened. Exit 0 when every test\n"
              "passes, 1 when one fails or a file is invalid, 2 for bad usage.\n", f);
}

int fh_cmd_test(int argc, char **argv) {
        static const struct option opts[] = {
                { "help", no_argument, NULL, 'h' },
                {}
        };
        counts c = { 0 };
        int o;

        optind = 1;
        while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1)
                switch (o) {
                case 'h':
                        usage(stdout);
                        return 0;
                default:
                        usage(stderr);
                        return 2;
                }
        if (optind == argc) {
                usage(stderr);
                return 2;
        }
        for (int i = optind; i < argc; i++)
                run_file(argv[i], &c);
        size_t files = (size_t) (argc - optind);
        if (c.failed || c.invalid_files) {
                printf("FAILED:");
                if (c.failed)
                        printf(" %zu of %zu tests failed%s", c.failed, c.tests, c.invalid_files ? "," : "");
                if (c.invalid_files)
                        printf(" %zu of %zu files invalid", c.invalid_files, files);
                printf("\n");
                return 1;
        }
        printf("ok: %zu tests passed in %zu file%s\n", c.passed, files, files == 1 ? "" : "s");
        return 0;
}
