/* The hot path allocates nothing per reading: once the windows of every
 * sensor are full, parsing a reading, ingesting it and formatting the
 * alerts it raises take no memory from malloc, and an alert's payload,
 * shared by every sink, is one allocation. malloc, calloc, realloc and the
 * strdups are wrapped at link time (-Wl,--wrap, tests/meson.build), so
 * what is counted is fenghuo's own code: libc's internals and the shared
 * libraries are not. The shipped rules and the Miyun registry, fed a
 * simulated storm. SRCDIR (the source tree) comes from meson. */
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "fenghuo/buf.h"
#include "fenghuo/engine.h"
#include "fenghuo/reading.h"
#include "fenghuo/simulate.h"
#include "payload.h"

static _Thread_local bool counting;
static _Thread_local unsigned long allocations;

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t m);
void *__real_realloc(void *p, size_t n);
char *__real_strdup(const char *s);
char *__real_strndup(const char *s, size_t n);
void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t n, size_t m);
void *__wrap_realloc(void *p, size_t n);
char *__wrap_strdup(const char *s);
char *__wrap_strndup(const char *s, size_t n);

void *__wrap_malloc(size_t n) {
        allocations += counting;
        return __real_malloc(n);
}

void *__wrap_calloc(size_t n, size_t m) {
        allocations += counting;
        return __real_calloc(n, m);
}

void *__wrap_realloc(void *p, size_t n) {
        allocations += counting;
        return __real_realloc(p, n);
}

char *__wrap_strdup(const char *s) {
        allocations += counting;
        return __real_strdup(s);
}

char *__wrap_strndup(const char *s, size_t n) {
        allocations += counting;
        return __real_strndup(s, n);
}

static char *read_file(const char *path, size_t *ret_len) {
        FILE *f = fopen(path, "rb");
        fh_buf b = FH_BUF_NULL;
        char chunk[4096];
        size_t n;

        if (!f)
                fail_msg("cannot open %s", path);
        while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
                fh_buf_append(&b, chunk, n);
        fclose(f);
        *ret_len = b.len;
        return b.data ? b.data : fh_strdup("");
}

/* The shipped rules (every .yaml file in rules/) over the Miyun registry. */
static fh_engine *shipped_engine(void) {
        const char *src = getenv("SRCDIR");
        char path[4096];
        fh_diags d = FH_DIAGS_NULL;
        fh_ruleset *rs;
        fh_registry *reg;
        fh_engine *e;
        struct dirent **names;
        size_t len;
        char *text;
        int n;

        assert_non_null(src);
        assert_int_equal(fh_ruleset_new(&rs), 0);
        snprintf(path, sizeof(path), "%s/rules", src);
        n = scandir(path, &names, NULL, alphasort);
        assert_true(n > 0);
        for (int i = 0; i < n; i++) {
                size_t l = strlen(names[i]->d_name);
                if (l > 5 && !strcmp(names[i]->d_name + l - 5, ".yaml")) {
                        snprintf(path, sizeof(path), "%s/rules/%s", src, names[i]->d_name);
                        text = read_file(path, &len);
                        assert_int_equal(fh_ruleset_parse(rs, path, text, len, &d), 0);
                        free(text);
                }
                free(names[i]);
        }
        free(names);
        assert_int_equal(fh_ruleset_finish(rs, &d), 0);
        snprintf(path, sizeof(path), "%s/stations/miyun.csv", src);
        text = read_file(path, &len);
        assert_int_equal(fh_registry_parse(path, text, len, &reg, &d), 0);
        free(text);
        assert_int_equal(fh_engine_new(&e, rs, reg, NULL, &d), 0);
        fh_diags_clear(&d);
        return e;
}

typedef struct lines {
        char **v;
        size_t *len;
        size_t n, cap;
} lines;

static int keep_line(void *userdata, const char *line, size_t len) {
        lines *l = userdata;

        if (l->n == l->cap) {
                l->cap = l->cap ? 2 * l->cap : 4096;
                l->v = fh_realloc(l->v, l->cap * sizeof(*l->v));
                l->len = fh_realloc(l->len, l->cap * sizeof(*l->len));
        }
        l->v[l->n] = fh_strndup(line, len);
        l->len[l->n++] = len;
        return 0;
}

typedef struct sink {
        const fh_engine *e;
        fh_buf json;             /* reused for every alert, as the daemon's */
        unsigned long alerts;
} sink;

static void format_alert(void *userdata, const fh_alert *a) {
        sink *s = userdata;

        fh_buf_reset(&s->json);
        fh_alert_to_json(s->e, a, &s->json);
        s->alerts++;
}

/* Two simulated days at 5-minute readings (a storm in them): the first
 * fills every window (the longest is 12 h), the second is counted. */
static void readings_allocate_nothing_once_the_windows_are_full(void **state) {
        fh_engine *e = shipped_engine();
        sink s = { .e = e };
        lines l = { 0 };
        fh_sim_options opt = {
                .seed = 7, .start_ms = 1690560000000LL, .duration_ms = 48 * 3600000LL,
                .step_ms = 5 * 60000LL, .tz_offset_min = 480, .storm_scale = 1.0,
        };
        unsigned long accepted = 0, alerts_warm;

        assert_int_equal(fh_simulate(fh_engine_registry(e), &opt, keep_line, &l), 0);
        fh_engine_set_alert_cb(e, format_alert, &s);
        for (size_t i = 0; i < l.n; i++) {
                fh_reading r;
                char why[256];

                if (i == l.n / 2) {
                        alerts_warm = s.alerts;
                        allocations = 0;
                        counting = true;
                }
                if (fh_reading_parse(l.v[i], l.len[i], &r, why, sizeof(why)) == FH_REJECT_NONE &&
                    fh_outcome_reject(fh_engine_ingest(e, &r)) == FH_REJECT_NONE && counting)
                        accepted++;
        }
        counting = false;
        print_message("%lu readings and %lu alerts after warm-up: %lu allocations\n", accepted,
                      s.alerts - alerts_warm, allocations);
        assert_true(accepted > 5000);
        assert_true(s.alerts > alerts_warm);
        assert_int_equal(allocations, 0);

        for (size_t i = 0; i < l.n; i++)
                free(l.v[i]);
        free(l.v);
        free(l.len);
        fh_buf_free(&s.json);
        fh_engine_free(e);
}

typedef struct payloads {
        const fh_engine *e;
        fh_buf json;
        fh_payload *p;           /* of the first alert */
        char key[512], field[256];
        unsigned long allocations;
} payloads;

static void keep_payload(void *userdata, const fh_alert *a) {
        payloads *ps = userdata;

        if (ps->p)
                return;
        fh_buf_reset(&ps->json);
        fh_alert_to_json(ps->e, a, &ps->json);
        assert_int_equal(fh_alert_key(a, ps->key, sizeof(ps->key)), 0);
        snprintf(ps->field, sizeof(ps->field), "%s:%s", a->rule->id, a->station->id);
        allocations = 0;
        counting = true;
        ps->p = fh_payload_alert(a, ps->json.data, ps->json.len);
        counting = false;
        ps->allocations = allocations;
}

/* The bytes every sink and checkpoint share: one allocation, the JSON as
 * formatted, and beside it the strings the sinks need. */
static void an_alert_payload_is_one_allocation(void **state) {
        fh_engine *e = shipped_engine();
        payloads ps = { .e = e };

        fh_engine_set_alert_cb(e, keep_payload, &ps);
        /* 30 mm in each of two 5-minute readings: 60 mm in 3 h. */
        for (int i = 0; i < 2; i++) {
                char line[256], why[256];
                fh_reading r;
                int n = snprintf(line, sizeof(line),
                                 "{\"sensor\":\"MY-RG-0001\",\"ts\":%lld,\"values\":{\"rain_mm\":30}}",
                                 1690646400000LL + i * 300000LL);
                assert_int_equal(fh_reading_parse(line, (size_t) n, &r, why, sizeof(why)), FH_REJECT_NONE);
                fh_engine_ingest(e, &r);
        }
        fh_payload *p = ps.p;
        assert_non_null(p);
        assert_int_equal(ps.allocations, 1);
        assert_int_equal(p->kind, FH_OUT_ALERT);
        assert_false(p->cleared);
        assert_int_equal(p->value_len, ps.json.len);
        assert_memory_equal(p->value, ps.json.data, ps.json.len);
        assert_int_equal(p->value[p->value_len], '\0');
        assert_int_equal(p->key_len, strlen("MY-RG-0001"));
        assert_string_equal(p->key, "MY-RG-0001");
        assert_string_equal(p->field, ps.field);
        assert_int_equal(p->field_len, strlen(ps.field));
        assert_string_equal(p->level, "orange");
        assert_string_equal(p->dedupe, ps.key);
        assert_null(p->reason);

        /* Shared: the last reference frees it (ASan and valgrind see a
         * leak or a double free). */
        assert_ptr_equal(fh_payload_ref(p), p);
        assert_null(fh_payload_unref(p));
        assert_int_equal(p->value_len, ps.json.len);
        assert_null(fh_payload_unref(p));
        assert_null(fh_payload_unref(NULL));
        fh_buf_free(&ps.json);
        fh_engine_free(e);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(readings_allocate_nothing_once_the_windows_are_full),
                cmocka_unit_test(an_alert_payload_is_one_allocation),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
