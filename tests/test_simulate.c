/* The scenario generator: reproducible bytes, valid readings in time order,
 * the storm it promises, the silent gauge, and bad input of every kind. */
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "fenghuo/buf.h"
#include "fenghuo/reading.h"
#include "fenghuo/registry.h"
#include "fenghuo/rules.h"
#include "fenghuo/simulate.h"
#include "fenghuo/timeutil.h"

#define MIN_MS  60000LL
#define HOUR_MS 3600000LL
#define DAY_MS  86400000LL

/* Every line the generator produced, back to back, with offsets. */
typedef struct lines {
        fh_buf text;
        size_t *off;
        size_t *len;
        size_t n, cap;
        size_t stop_after;     /* 0: never stop */
} lines;

static int collect(void *userdata, const char *line, size_t len) {
        lines *l = userdata;

        if (l->n == l->cap) {
                l->cap = l->cap ? l->cap * 2 : 1024;
                l->off = fh_realloc(l->off, l->cap * sizeof(size_t));
                l->len = fh_realloc(l->len, l->cap * sizeof(size_t));
        }
        l->off[l->n] = l->text.len;
        l->len[l->n] = len;
        l->n++;
        fh_buf_append(&l->text, line, len);
        if (l->stop_after && l->n >= l->stop_after)
                return 42;
        return 0;
}

static void lines_free(lines *l) {
        fh_buf_free(&l->text);
        free(l->off);
        free(l->len);
        memset(l, 0, sizeof(*l));
}

static const char *line_at(const lines *l, size_t i) {
        return l->text.data + l->off[i];
}

static fh_registry *synthetic(size_t n, uint64_t seed) {
        char *text;
        size_t len;
        fh_registry *reg = NULL;
        fh_diags d = FH_DIAGS_NULL;

        fh_simulate_registry(n, seed, &text, &len);
        assert_int_equal(fh_registry_parse("synthetic.csv", text, len, &reg, &d), 0);
        assert_int_equal(d.n_errors, 0);
        fh_diags_clear(&d);
        free(text);
        return reg;
}

static fh_sim_options options(uint64_t seed, int64_t duration_ms, double bad) {
        fh_sim_options o = {
                .seed = seed,
                .duration_ms = duration_ms,
                .step_ms = 10 * MIN_MS,
                .bad_share = bad,
                .tz_offset_min = 480,
                .storm_scale = 1.0,
        };
        assert_int_equal(fh_time_parse_rfc3339("2023-07-29T00:00:00+08:00", 25, &o.start_ms, NULL), 0);
        return o;
}

static void run(const fh_registry *reg, const fh_sim_options *o, lines *out) {
        memset(out, 0, sizeof(*out));
        assert_int_equal(fh_simulate(reg, o, collect, out), 0);
}

static bool parse(const lines *l, size_t i, fh_reading *r) {
        char why[128];
        return fh_reading_parse(line_at(l, i), l->len[i], r, why, sizeof(why)) == FH_REJECT_NONE;
}

static double value_of(const fh_reading *r, const char *name) {
        for (unsigned i = 0; i < r->n_values; i++)
                if (strcmp(r->values[i].name, name) == 0)
                        return r->values[i].v;
        return NAN;
}

static void the_same_seed_gives_the_same_bytes_and_another_seed_others(void **state) {
        fh_registry *reg = synthetic(60, 7);
        fh_sim_options o = options(5, 12 * HOUR_MS, 0.1);
        lines a, b, c;

        run(reg, &o, &a);
        run(reg, &o, &b);
        o.seed = 6;
        run(reg, &o, &c);
        assert_true(a.n > 0);
        assert_int_equal(a.n, b.n);
        assert_int_equal(a.text.len, b.text.len);
        assert_memory_equal(a.text.data, b.text.data, a.text.len);
        assert_false(a.text.len == c.text.len && memcmp(a.text.data, c.text.data, a.text.len) == 0);
        lines_free(&a);
        lines_free(&b);
        lines_free(&c);
        fh_registry_free(reg);
}

static void the_synthetic_registry_is_the_same_for_the_same_seed(void **state) {
        char *a, *b, *c;
        size_t al, bl, cl;

        fh_simulate_registry(300, 9, &a, &al);
        fh_simulate_registry(300, 9, &b, &bl);
        fh_simulate_registry(300, 10, &c, &cl);
        assert_int_equal(al, bl);
        assert_memory_equal(a, b, al);
        assert_false(al == cl && memcmp(a, c, al) == 0);
        free(a);
        free(b);
        free(c);
}

static void the_synthetic_registry_mixes_kinds_like_a_district_with_ids_in_numeric_order(void **state) {
        fh_registry *reg = synthetic(1000, 3);
        size_t count[FH_KIND__MAX] = { 0 };
        char prev_code[3] = "";
        unsigned long prev_num = 0;

        assert_int_equal(reg->n_stations, 1000);
        for (size_t i = 0; i < reg->n_stations; i++) {
                const fh_station *s = &reg->stations[i];
                char code[3] = { s->id[3], s->id[4], 0 };
                unsigned long num = strtoul(s->id + 6, NULL, 10);

                count[s->kind]++;
                assert_int_equal(s->id_len, strlen("MY-RG-000001"));
                /* Registry order is byte order; within a kind it must also
                 * be numeric order, which zero padding gives. */
                if (strcmp(code, prev_code) == 0)
                        assert_int_equal(num, prev_num + 1);
                else
                        assert_int_equal(num, 1);
                memcpy(prev_code, code, sizeof(code));
                prev_num = num;
        }
        assert_int_equal(count[FH_KIND_RAIN], 700);
        assert_int_equal(count[FH_KIND_WATER_LEVEL], 150);
        assert_int_equal(count[FH_KIND_LANDSLIDE], 100);
        assert_int_equal(count[FH_KIND_BRIDGE], 50);

        /* The attributes the scenario and the default rules read are there. */
        int c_warn = fh_registry_column(reg, "warning_level", 13);
        int c_creep = fh_registry_column(reg, "creep_rate_mm_d", 15);
        int c_vib = fh_registry_column(reg, "vibration_limit_mm_s", 20);
        int c_lat = fh_registry_column(reg, "lat", 3);
        assert_true(c_warn >= 0 && c_creep >= 0 && c_vib >= 0 && c_lat >= 0);
        for (size_t i = 0; i < reg->n_stations; i++) {
                const fh_station *s = &reg->stations[i];
                const fh_attr *lat = fh_station_attr(s, c_lat);
                assert_non_null(lat);
                assert_true(lat->is_number && lat->num > 40 && lat->num < 41);
                assert_true((fh_station_attr(s, c_warn) != NULL) == (s->kind == FH_KIND_WATER_LEVEL));
                assert_true((fh_station_attr(s, c_creep) != NULL) == (s->kind == FH_KIND_LANDSLIDE));
                assert_true((fh_station_attr(s, c_vib) != NULL) == (s->kind == FH_KIND_BRIDGE));
        }
        fh_registry_free(reg);
}

static void a_tiny_synthetic_registry_still_has_every_kind(void **state) {
        fh_registry *reg = synthetic(4, 1);
        bool seen[FH_KIND__MAX] = { false };

        assert_int_equal(reg->n_stations, 4);
        for (size_t i = 0; i < reg->n_stations; i++)
                seen[reg->stations[i].kind] = true;
        for (int k = 0; k < FH_KIND__MAX; k++)
                assert_true(seen[k]);
        fh_registry_free(reg);
}

static void every_line_of_a_clean_run_is_a_valid_reading_with_its_kinds_fields(void **state) {
        fh_registry *reg = synthetic(80, 2);
        fh_sim_options o = options(1, 1 * DAY_MS, 0);
        lines l;

        run(reg, &o, &l);
        assert_true(l.n > 80 * 100);
        for (size_t i = 0; i < l.n; i++) {
                fh_reading r;
                char why[128];
                fh_reject rej = fh_reading_parse(line_at(&l, i), l.len[i], &r, why, sizeof(why));
                if (rej != FH_REJECT_NONE)
                        fail_msg("line %zu rejected (%s): %.*s", i + 1, why, (int)l.len[i], line_at(&l, i));
                const fh_station *s = fh_registry_find(reg, r.sensor, r.sensor_len);
                assert_non_null(s);
                switch (s->kind) {
                case FH_KIND_RAIN:
                        assert_int_equal(r.n_values, 1);
                        assert_true(value_of(&r, "rain_mm") >= 0);
                        break;
                case FH_KIND_WATER_LEVEL:
                        assert_int_equal(r.n_values, 1);
                        assert_false(isnan(value_of(&r, "level_m")));
                        break;
                case FH_KIND_LANDSLIDE:
                        assert_int_equal(r.n_values, 1);
                        assert_false(isnan(value_of(&r, "displacement_mm")));
                        break;
                case FH_KIND_BRIDGE:
                        assert_int_equal(r.n_values, 3);
                        assert_false(isnan(value_of(&r, "deflection_mm")));
                        assert_false(isnan(value_of(&r, "strain_ue")));
                        assert_true(value_of(&r, "vibration_mm_s") >= 0);
                        break;
                default:
                        fail();
                }
                /* Timestamps carry the requested offset. */
                assert_non_null(memmem(line_at(&l, i), l.len[i], "+08:00\"", 7));
        }
        lines_free(&l);
        fh_registry_free(reg);
}

static void timestamps_never_go_back_and_stations_come_in_id_order_within_one(void **state) {
        fh_registry *reg = synthetic(50, 4);
        fh_sim_options o = options(3, 1 * DAY_MS, 0);
        int64_t prev_ts = INT64_MIN;
        char prev_id[FH_SENSOR_ID_MAX + 1] = "";
        lines l;

        run(reg, &o, &l);
        for (size_t i = 0; i < l.n; i++) {
                fh_reading r;
                assert_true(parse(&l, i, &r));
                assert_true(r.ts_ms >= prev_ts);
                assert_true(r.ts_ms >= o.start_ms && r.ts_ms < o.start_ms + o.duration_ms);
                assert_int_equal((r.ts_ms - o.start_ms) % o.step_ms, 0);
                if (r.ts_ms == prev_ts)
                        assert_true(strcmp(prev_id, r.sensor) < 0);
                prev_ts = r.ts_ms;
                memcpy(prev_id, r.sensor, sizeof(prev_id));
        }
        lines_free(&l);
        fh_registry_free(reg);
}

/* Per sensor: its timestamps in order, from a clean run. */
static void gaps(const fh_registry *reg, const lines *l, int64_t *max_gap, int64_t *last_ts) {
        int64_t *prev = fh_calloc(reg->n_stations, sizeof(int64_t));

        for (size_t i = 0; i < reg->n_stations; i++) {
                prev[i] = INT64_MIN;
                max_gap[i] = 0;
                last_ts[i] = INT64_MIN;
        }
        for (size_t i = 0; i < l->n; i++) {
                fh_reading r;
                assert_true(parse(l, i, &r));
                const fh_station *s = fh_registry_find(reg, r.sensor, r.sensor_len);
                if (prev[s->index] != INT64_MIN && r.ts_ms - prev[s->index] > max_gap[s->index])
                        max_gap[s->index] = r.ts_ms - prev[s->index];
                prev[s->index] = r.ts_ms;
                last_ts[s->index] = r.ts_ms;
        }
        free(prev);
}

static void the_last_rain_gauge_goes_silent_for_hours_and_comes_back(void **state) {
        fh_registry *reg = synthetic(40, 5);
        fh_sim_options o = options(1, 2 * DAY_MS, 0);
        int64_t *max_gap = fh_calloc(reg->n_stations, sizeof(int64_t));
        int64_t *last_ts = fh_calloc(reg->n_stations, sizeof(int64_t));
        size_t silent = SIZE_MAX;
        lines l;

        for (size_t i = 0; i < reg->n_stations; i++)
                if (reg->stations[i].kind == FH_KIND_RAIN)
                        silent = i;
        assert_true(silent != SIZE_MAX);
        run(reg, &o, &l);
        gaps(reg, &l, max_gap, last_ts);
        for (size_t i = 0; i < reg->n_stations; i++) {
                if (i == silent) {
                        assert_true(max_gap[i] >= 3 * HOUR_MS);
                        assert_true(max_gap[i] <= 5 * HOUR_MS);
                        /* Back before the end. */
                        assert_int_equal(last_ts[i], o.start_ms + o.duration_ms - o.step_ms);
                } else
                        assert_int_equal(max_gap[i], o.step_ms);
        }
        free(max_gap);
        free(last_ts);
        lines_free(&l);
        fh_registry_free(reg);
}

/* Sliding sums of rain_mm over (t - w, t], largest over the run. */
static double max_window_sum(const double *mm, size_t n, size_t w) {
        double sum = 0, best = 0;
        for (size_t i = 0; i < n; i++) {
                sum += mm[i];
                if (i >= w)
                        sum -= mm[i - w];
                best = fmax(best, sum);
        }
        return best;
}

typedef struct storm_stats {
        size_t red, dry, rain;
        bool water_over_guarantee, water_under_warning;
} storm_stats;

static storm_stats storm(double scale) {
        fh_registry *reg = synthetic(300, 11);
        fh_sim_options o = options(1, 2 * DAY_MS, 0);
        size_t steps = (size_t)(o.duration_ms / o.step_ms);
        double *mm = fh_calloc(reg->n_stations * steps, sizeof(double));
        double *peak = fh_calloc(reg->n_stations, sizeof(double));
        int c_warn = fh_registry_column(reg, "warning_level", 13);
        int c_guar = fh_registry_column(reg, "guarantee_level", 15);
        storm_stats st = { 0 };
        lines l;

        o.storm_scale = scale;
        run(reg, &o, &l);
        for (size_t i = 0; i < l.n; i++) {
                fh_reading r;
                assert_true(parse(&l, i, &r));
                const fh_station *s = fh_registry_find(reg, r.sensor, r.sensor_len);
                size_t k = (size_t)((r.ts_ms - o.start_ms) / o.step_ms);
                if (s->kind == FH_KIND_RAIN)
                        mm[s->index * steps + k] = value_of(&r, "rain_mm");
                if (s->kind == FH_KIND_WATER_LEVEL)
                        peak[s->index] = fmax(peak[s->index], value_of(&r, "level_m"));
        }
        for (size_t i = 0; i < reg->n_stations; i++) {
                const fh_station *s = &reg->stations[i];
                if (s->kind == FH_KIND_RAIN) {
                        st.rain++;
                        if (max_window_sum(mm + i * steps, steps, 18) >= 100)
                                st.red++;
                        if (max_window_sum(mm + i * steps, steps, 72) < 50)
                                st.dry++;
                }
                if (s->kind == FH_KIND_WATER_LEVEL) {
                        if (peak[i] >= fh_station_attr(s, c_guar)->num)
                                st.water_over_guarantee = true;
                        if (peak[i] < fh_station_attr(s, c_warn)->num)
                                st.water_under_warning = true;
                }
        }
        free(mm);
        free(peak);
        lines_free(&l);
        fh_registry_free(reg);
        return st;
}

static void the_storm_reaches_red_in_its_core_and_leaves_far_corners_below_blue(void **state) {
        storm_stats st = storm(1.0);

        print_message("%zu gauges: %zu red in 3 h, %zu below blue\n", st.rain, st.red, st.dry);
        assert_true(st.red > 0);
        assert_true(st.red < st.rain / 2);
        assert_true(st.dry > 0);
        assert_true(st.water_over_guarantee);
        assert_true(st.water_under_warning);
}

static void without_a_storm_nothing_reaches_a_rainstorm_threshold(void **state) {
        storm_stats st = storm(0.0);

        assert_int_equal(st.red, 0);
        assert_int_equal(st.dry, st.rain);
        assert_false(st.water_over_guarantee);
}

static void one_slope_accelerates_past_89_degrees_while_the_others_creep(void **state) {
        fh_registry *reg = synthetic(200, 13);
        fh_sim_options o = options(1, 2 * DAY_MS, 0);
        int c_creep = fh_registry_column(reg, "creep_rate_mm_d", 15);
        size_t steps = (size_t)(o.duration_ms / o.step_ms), day = (size_t)(DAY_MS / o.step_ms);
        double *d = fh_calloc(reg->n_stations * steps, sizeof(double));
        size_t fast = 0, slow = 0, slopes = 0;
        lines l;

        run(reg, &o, &l);
        for (size_t i = 0; i < l.n; i++) {
                fh_reading r;
                assert_true(parse(&l, i, &r));
                const fh_station *s = fh_registry_find(reg, r.sensor, r.sensor_len);
                if (s->kind == FH_KIND_LANDSLIDE)
                        d[s->index * steps + (size_t)((r.ts_ms - o.start_ms) / o.step_ms)] =
                                value_of(&r, "displacement_mm");
        }
        /* The tangential angle's ratio: the largest one-day displacement
         * against the reference creep rate. */
        for (size_t i = 0; i < reg->n_stations; i++) {
                const fh_station *s = &reg->stations[i];
                double best = 0;
                if (s->kind != FH_KIND_LANDSLIDE)
                        continue;
                slopes++;
                for (size_t k = 0; k + day < steps; k++)
                        best = fmax(best, d[i * steps + k + day] - d[i * steps + k]);
                best /= fh_station_attr(s, c_creep)->num;
                if (best > tan(89 * M_PI / 180))
                        fast++;
                else if (best < 1.0)
                        slow++;
        }
        assert_int_equal(fast, 1);
        assert_int_equal(slow, slopes - 1);
        free(d);
        lines_free(&l);
        fh_registry_free(reg);
}

typedef struct seen_ts {
        int64_t *v;
        size_t n, cap;
        int64_t latest;
} seen_ts;

static bool seen_has(const seen_ts *s, int64_t ts) {
        for (size_t i = 0; i < s->n; i++)
                if (s->v[i] == ts)
                        return true;
        return false;
}

static void seen_add(seen_ts *s, int64_t ts) {
        if (s->n == s->cap) {
                s->cap = s->cap ? 2 * s->cap : 64;
                s->v = fh_realloc(s->v, s->cap * sizeof(int64_t));
        }
        s->v[s->n++] = ts;
        if (s->n == 1 || ts > s->latest)
                s->latest = ts;
}

typedef struct classified {
        size_t total, good, rejected[FH_REJECT__MAX], unknown, duplicate, late;
        size_t truncated, nonfinite, string_value;
        lines good_lines;
} classified;

/* Sorts every line the way the engine would see it. */
static void classify(const fh_registry *reg, const lines *l, classified *c) {
        seen_ts *seen = fh_calloc(reg->n_stations, sizeof(seen_ts));

        memset(c, 0, sizeof(*c));
        c->total = l->n;
        for (size_t i = 0; i < l->n; i++) {
                const char *p = line_at(l, i);
                size_t len = l->len[i];
                fh_reading r;
                char why[128];
                fh_reject rej = fh_reading_parse(p, len, &r, why, sizeof(why));

                if (rej != FH_REJECT_NONE) {
                        c->rejected[rej]++;
                        if (rej == FH_REJECT_TOO_LONG)
                                assert_true(len > FH_READING_BYTES_MAX);
                        if (len >= 11 && p[len - 1] != '}' && memcmp(p, "{\"sensor\":\"", 11) == 0)
                                c->truncated++;
                        if (memmem(p, len, "Infinity", 8) || memmem(p, len, "NaN", 3) || memmem(p, len, "e999", 4))
                                c->nonfinite++;
                        if (rej == FH_REJECT_BAD_VALUE && memmem(p, len, "_mm\":\"", 6))
                                c->string_value++;
                        continue;
                }
                const fh_station *s = fh_registry_find(reg, r.sensor, r.sensor_len);
                if (!s) {
                        c->unknown++;
                        continue;
                }
                seen_ts *st = &seen[s->index];
                if (seen_has(st, r.ts_ms)) {
                        c->duplicate++;
                        continue;
                }
                if (st->n > 0 && r.ts_ms < st->latest) {
                        /* Within the engine's default lateness, and not so
                         * recent that it is just jitter. */
                        assert_true(st->latest - r.ts_ms >= 10 * MIN_MS);
                        assert_true(st->latest - r.ts_ms <= 50 * MIN_MS);
                        c->late++;
                        seen_add(st, r.ts_ms);
                        continue;
                }
                seen_add(st, r.ts_ms);
                c->good++;
                collect(&c->good_lines, p, len);
        }
        for (size_t i = 0; i < reg->n_stations; i++)
                free(seen[i].v);
        free(seen);
}

static void bad_lines_come_in_the_requested_share_and_in_every_kind(void **state) {
        fh_registry *reg = synthetic(100, 6);
        fh_sim_options o = options(2, 1 * DAY_MS, 0.2);
        classified c;
        lines l;

        run(reg, &o, &l);
        classify(reg, &l, &c);
        size_t bad = c.total - c.good;
        double share = (double)bad / (double)c.total;
        print_message("%zu lines, %zu bad (%.3f): malformed %zu, missing %zu, timestamp %zu, value %zu, "
                      "too long %zu, unknown %zu, duplicate %zu, late %zu\n",
                      c.total, bad, share, c.rejected[FH_REJECT_MALFORMED_JSON],
                      c.rejected[FH_REJECT_MISSING_FIELD], c.rejected[FH_REJECT_BAD_TIMESTAMP],
                      c.rejected[FH_REJECT_BAD_VALUE], c.rejected[FH_REJECT_TOO_LONG], c.unknown,
                      c.duplicate, c.late);
        assert_true(share > 0.18 && share < 0.22);
        assert_true(c.rejected[FH_REJECT_MALFORMED_JSON] > 0);
        assert_true(c.rejected[FH_REJECT_MISSING_FIELD] > 0);
        assert_true(c.rejected[FH_REJECT_BAD_TIMESTAMP] > 0);
        assert_true(c.rejected[FH_REJECT_BAD_VALUE] > 0);
        assert_true(c.rejected[FH_REJECT_TOO_LONG] > 0);
        assert_true(c.rejected[FH_REJECT_TOO_LONG] <= c.total / 10000 + 1);
        assert_true(c.unknown > 0);
        assert_true(c.duplicate > 0);
        assert_true(c.late > 0);
        assert_true(c.truncated > 0);
        assert_true(c.nonfinite > 0);
        assert_true(c.string_value > 0);
        lines_free(&c.good_lines);
        lines_free(&l);
        fh_registry_free(reg);
}

static void asking_for_bad_lines_leaves_every_valid_line_as_it_was(void **state) {
        fh_registry *reg = synthetic(30, 8);
        fh_sim_options o = options(4, 12 * HOUR_MS, 0);
        classified c;
        lines clean, dirty;

        run(reg, &o, &clean);
        o.bad_share = 0.3;
        run(reg, &o, &dirty);
        classify(reg, &dirty, &c);
        assert_int_equal(c.good_lines.n, clean.n);
        assert_int_equal(c.good_lines.text.len, clean.text.len);
        assert_memory_equal(c.good_lines.text.data, clean.text.data, clean.text.len);
        lines_free(&c.good_lines);
        lines_free(&clean);
        lines_free(&dirty);
        fh_registry_free(reg);
}

static void a_callback_that_returns_nonzero_stops_the_run_and_is_returned(void **state) {
        fh_registry *reg = synthetic(20, 1);
        fh_sim_options o = options(1, 1 * DAY_MS, 0.1);
        lines l = { .stop_after = 17 };

        assert_int_equal(fh_simulate(reg, &o, collect, &l), 42);
        assert_int_equal(l.n, 17);
        lines_free(&l);
        fh_registry_free(reg);
}

static void impossible_options_are_refused(void **state) {
        fh_registry *reg = synthetic(10, 1);
        fh_sim_options o = options(1, 1 * DAY_MS, 0);
        lines l = { 0 };

        o.step_ms = 0;
        assert_int_equal(fh_simulate(reg, &o, collect, &l), -EINVAL);
        o = options(1, -1, 0);
        assert_int_equal(fh_simulate(reg, &o, collect, &l), -EINVAL);
        o = options(1, 1 * DAY_MS, 1.5);
        assert_int_equal(fh_simulate(reg, &o, collect, &l), -EINVAL);
        o = options(1, 1 * DAY_MS, 0);
        o.start_ms = FH_TIME_MAX_MS - HOUR_MS;
        assert_int_equal(fh_simulate(reg, &o, collect, &l), -EINVAL);
        o = options(1, 1 * DAY_MS, 0);
        o.storm_scale = NAN;
        assert_int_equal(fh_simulate(reg, &o, collect, &l), -EINVAL);
        assert_int_equal(l.n, 0);
        fh_registry_free(reg);
}

static void a_zero_duration_or_an_empty_registry_writes_nothing(void **state) {
        fh_registry *reg = synthetic(10, 1);
        fh_registry *empty = synthetic(0, 1);
        fh_sim_options o = options(1, 0, 0.5);
        lines l;

        run(reg, &o, &l);
        assert_int_equal(l.n, 0);
        lines_free(&l);
        o = options(1, DAY_MS, 0.5);
        run(empty, &o, &l);
        assert_int_equal(l.n, 0);
        lines_free(&l);
        fh_registry_free(reg);
        fh_registry_free(empty);
}

static void stations_without_coordinates_still_get_weather(void **state) {
        static const char csv[] =
                "id,kind,name\n"
                "A-1,rain,a\nA-2,rain,b\nA-3,rain,c\nA-4,rain,d\nA-5,rain,e\n"
                "B-1,water_level,w\nC-1,landslide,l\nD-1,bridge,br\n";
        fh_registry *reg = NULL;
        fh_diags d = FH_DIAGS_NULL;
        fh_sim_options o = options(1, 2 * DAY_MS, 0);
        double total = 0;
        lines l;

        assert_int_equal(fh_registry_parse("x.csv", csv, sizeof(csv) - 1, &reg, &d), 0);
        fh_diags_clear(&d);
        run(reg, &o, &l);
        for (size_t i = 0; i < l.n; i++) {
                fh_reading r;
                assert_true(parse(&l, i, &r));
                if (r.sensor[0] == 'A')
                        total += value_of(&r, "rain_mm");
        }
        assert_true(total > 50);
        lines_free(&l);
        fh_registry_free(reg);
}

/* The whole file (SRCDIR-relative), NUL-terminated. */
static char *source_file(const char *rel, size_t *ret_len) {
        char p[4096];
        const char *src = getenv("SRCDIR");
        fh_buf b = FH_BUF_NULL;
        char chunk[65536];
        size_t n;
        FILE *f;

        assert_non_null(src);
        snprintf(p, sizeof(p), "%s/%s", src, rel);
        f = fopen(p, "re");
        assert_non_null(f);
        while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
                fh_buf_append(&b, chunk, n);
        fclose(f);
        *ret_len = b.len;
        return b.data;
}

static void every_field_it_writes_is_declared_for_its_kind_in_rules_fields_yaml(void **state) {
        size_t flen, slen;
        char *fields = source_file("rules/fields.yaml", &flen), *csv = source_file("stations/miyun.csv", &slen);
        fh_diags d = FH_DIAGS_NULL;
        fh_ruleset *rs;
        fh_registry *reg;
        lines l = { 0 };
        size_t checked = 0;

        assert_int_equal(fh_ruleset_new(&rs), 0);
        assert_int_equal(fh_ruleset_parse(rs, "rules/fields.yaml", fields, flen, &d), 0);
        assert_int_equal(fh_registry_parse("stations/miyun.csv", csv, slen, &reg, &d), 0);
        fh_sim_options o = options(7, 2 * DAY_MS, 0);
        assert_int_equal(fh_simulate(reg, &o, collect, &l), 0);
        for (size_t i = 0; i < l.n; i++) {
                fh_reading r;
                assert_int_equal(fh_reading_parse(line_at(&l, i), l.len[i], &r, NULL, 0), FH_REJECT_NONE);
                const fh_station *st = fh_registry_find(reg, r.sensor, r.sensor_len);
                assert_non_null(st);
                for (unsigned v = 0; v < r.n_values; v++) {
                        if (!fh_ruleset_field(rs, st->kind, r.values[v].name, r.values[v].name_len))
                                fail_msg("%s (%s) writes %s, which rules/fields.yaml does not declare", r.sensor,
                                         fh_kind_name(st->kind), r.values[v].name);
                        checked++;
                }
        }
        assert_true(checked > 10000);
        lines_free(&l);
        fh_registry_free(reg);
        fh_ruleset_free(rs);
        fh_diags_clear(&d);
        free(fields);
        free(csv);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(the_same_seed_gives_the_same_bytes_and_another_seed_others),
                cmocka_unit_test(the_synthetic_registry_is_the_same_for_the_same_seed),
                cmocka_unit_test(the_synthetic_registry_mixes_kinds_like_a_district_with_ids_in_numeric_order),
                cmocka_unit_test(a_tiny_synthetic_registry_still_has_every_kind),
                cmocka_unit_test(every_line_of_a_clean_run_is_a_valid_reading_with_its_kinds_fields),
                cmocka_unit_test(timestamps_never_go_back_and_stations_come_in_id_order_within_one),
                cmocka_unit_test(the_last_rain_gauge_goes_silent_for_hours_and_comes_back),
                cmocka_unit_test(the_storm_reaches_red_in_its_core_and_leaves_far_corners_below_blue),
                cmocka_unit_test(without_a_storm_nothing_reaches_a_rainstorm_threshold),
                cmocka_unit_test(one_slope_accelerates_past_89_degrees_while_the_others_creep),
                cmocka_unit_test(bad_lines_come_in_the_requested_share_and_in_every_kind),
                cmocka_unit_test(asking_for_bad_lines_leaves_every_valid_line_as_it_was),
                cmocka_unit_test(a_callback_that_returns_nonzero_stops_the_run_and_is_returned),
                cmocka_unit_test(impossible_options_are_refused),
                cmocka_unit_test(a_zero_duration_or_an_empty_registry_writes_nothing),
                cmocka_unit_test(stations_without_coordinates_still_get_weather),
                cmocka_unit_test(every_field_it_writes_is_declared_for_its_kind_in_rules_fields_yaml),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
