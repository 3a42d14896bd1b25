/* The engine as SPEC §3.2 and §3.3 describe it: the alert state machine at
 * the exact edges of `for` and `clear_after`, duplicates, late and dropped
 * readings, tick boundaries, ordering, and snapshots. */
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

#include "fenghuo/engine.h"
#include "fenghuo/timeutil.h"

#define MIN_ (60 * 1000LL)
#define T0 1690646400000LL /* 2023-07-30T00:00:00+08:00 */

static const char *stations_csv =
        "id,kind,name,region,warning_level\n"
        "A,rain,甲站,miyun,\n"
        "B,rain,乙站,miyun,\n"
        "C,rain,丙站,other,\n"
        "W,water_level,水位站,miyun,150.5\n";

typedef struct rec {
        char lines[256][160];
        char json[256][1024];
        int n;
        fh_engine *e;
} rec;

static void on_alert(void *ud, const fh_alert *a) {
        rec *r = ud;
        fh_buf b = FH_BUF_NULL;

        assert_true(r->n < 256);
        snprintf(r->lines[r->n], sizeof(r->lines[0]), "%s %s %s %s %lld", fh_event_name(a->event),
                 a->rule->id, a->station->id, fh_level_name(a->level), (long long) ((a->ts_ms - T0) / MIN_));
        fh_alert_to_json(r->e, a, &b);
        snprintf(r->json[r->n], sizeof(r->json[0]), "%s", b.data);
        fh_buf_free(&b);
        r->n++;
}

static fh_engine *engine(const char *yaml, rec *r, const fh_engine_config *cfg) {
        fh_diags d = FH_DIAGS_NULL;
        fh_ruleset *rs;
        fh_registry *reg;
        fh_engine *e;

        assert_int_equal(fh_ruleset_new(&rs), 0);
        if (fh_ruleset_parse(rs, "t.yaml", yaml, strlen(yaml), &d) < 0 || fh_ruleset_finish(rs, &d) < 0) {
                char line[512];
                for (size_t i = 0; i < d.n; i++) {
                        fh_diag_format(&d.v[i], line, sizeof(line));
                        fprintf(stderr, "%s\n", line);
                }
                fail();
        }
        assert_int_equal(fh_registry_parse("s.csv", stations_csv, strlen(stations_csv), &reg, &d), 0);
        assert_int_equal(fh_engine_new(&e, rs, reg, cfg, &d), 0);
        fh_diags_clear(&d);
        memset(r, 0, sizeof(*r));
        r->e = e;
        fh_engine_set_alert_cb(e, on_alert, r);
        return e;
}

static fh_outcome feed_ms(fh_engine *e, const char *sensor, int64_t ms, const char *field, double v) {
        fh_reading rd = { 0 };

        snprintf(rd.sensor, sizeof(rd.sensor), "%s", sensor);
        rd.sensor_len = (uint8_t) strlen(sensor);
        rd.ts_ms = T0 + ms;
        rd.n_values = 1;
        snprintf(rd.values[0].name, sizeof(rd.values[0].name), "%s", field);
        rd.values[0].name_len = (uint8_t) strlen(field);
        rd.values[0].v = v;
        return fh_engine_ingest(e, &rd);
}

static fh_outcome feed(fh_engine *e, const char *sensor, int64_t minutes, const char *field, double v) {
        return feed_ms(e, sensor, minutes * MIN_, field, v);
}

static const char *levels_rule =
        "rules:\n"
        "  - id: gauge\n"
        "    kind: rain\n"
        "    levels:\n"
        "      red: x >= 4\n"
        "      yellow: x >= 2\n"
        "      blue: x >= 1\n"
        "    report: x\n";

static void level_follows_the_raw_target_without_for_or_clear_after(void **state) {
        rec r;
        fh_engine *e = engine(levels_rule, &r, NULL);
        double v[] = { 0, 1, 2, 4, 2, 0 };

        for (int i = 0; i < 6; i++)
                feed(e, "A", i, "x", v[i]);
        assert_int_equal(r.n, 5);
        assert_string_equal(r.lines[0], "raised gauge A blue 1");
        assert_string_equal(r.lines[1], "escalated gauge A yellow 2");
        assert_string_equal(r.lines[2], "escalated gauge A red 3");
        assert_string_equal(r.lines[3], "deescalated gauge A yellow 4");
        assert_string_equal(r.lines[4], "cleared gauge A none 5");
        fh_engine_free(e);
}

static void for_raises_exactly_when_the_condition_has_held_that_long(void **state) {
        rec r;
        fh_engine *e = engine("rules:\n  - id: g\n    kind: rain\n    for: 10m\n    levels:\n      blue: x >= 1\n", &r, NULL);

        feed(e, "A", 0, "x", 1);   /* run starts */
        feed(e, "A", 5, "x", 1);
        feed(e, "A", 9, "x", 0);   /* false: run restarts at the next true */
        feed(e, "A", 10, "x", 1);
        feed(e, "A", 19, "x", 1);  /* 9 min: not yet */
        assert_int_equal(r.n, 0);
        feed(e, "A", 20, "x", 1);  /* exactly 10 min: ready */
        assert_int_equal(r.n, 1);
        assert_string_equal(r.lines[0], "raised g A blue 20");
        fh_engine_free(e);
}

static void clear_after_waits_exactly_and_restarts_when_interrupted(void **state) {
        rec r;
        fh_engine *e = engine("rules:\n  - id: g\n    kind: rain\n    clear_after: 30m\n    levels:\n      blue: x >= 1\n", &r, NULL);

        feed(e, "A", 0, "x", 1);   /* raised */
        feed(e, "A", 10, "x", 0);  /* wait starts */
        feed(e, "A", 20, "x", 1);  /* wait ends */
        feed(e, "A", 30, "x", 0);  /* wait starts again */
        feed(e, "A", 59, "x", 0);
        assert_int_equal(r.n, 1);
        feed(e, "A", 60, "x", 0);  /* 30 min below: cleared */
        assert_int_equal(r.n, 2);
        assert_string_equal(r.lines[1], "cleared g A none 60");
        fh_engine_free(e);
}

static void deescalation_waits_for_clear_after_and_escalation_does_not(void **state) {
        rec r;
        fh_engine *e = engine("rules:\n  - id: g\n    kind: rain\n    clear_after: 10m\n    levels:\n"
                              "      red: x >= 4\n      blue: x >= 1\n", &r, NULL);

        feed(e, "A", 0, "x", 4);
        feed(e, "A", 5, "x", 1);   /* below red: wait */
        feed(e, "A", 10, "x", 1);
        feed(e, "A", 15, "x", 1);  /* 10 min: down to blue, not none */
        feed(e, "A", 16, "x", 5);  /* up at once */
        assert_int_equal(r.n, 3);
        assert_string_equal(r.lines[0], "raised g A red 0");
        assert_string_equal(r.lines[1], "deescalated g A blue 15");
        assert_string_equal(r.lines[2], "escalated g A red 16");
        fh_engine_free(e);
}

static void highest_ready_level_wins_when_for_holds_back_a_higher_one(void **state) {
        rec r;
        fh_engine *e = engine("rules:\n  - id: g\n    kind: rain\n    for: 10m\n    levels:\n"
                              "      red: x >= 4\n      blue: x >= 1\n", &r, NULL);

        feed(e, "A", 0, "x", 1);
        feed(e, "A", 5, "x", 4);   /* red's run starts at 5 */
        feed(e, "A", 10, "x", 4);  /* blue ready (10 min), red not */
        feed(e, "A", 15, "x", 4);  /* red ready */
        assert_int_equal(r.n, 2);
        assert_string_equal(r.lines[0], "raised g A blue 10");
        assert_string_equal(r.lines[1], "escalated g A red 15");
        fh_engine_free(e);
}

typedef struct evals {
        char lines[32][96];
        int n;
} evals;

static void on_eval(void *ud, const fh_evaluation *ev) {
        evals *x = ud;

        assert_true(x->n < 32);
        snprintf(x->lines[x->n++], sizeof(x->lines[0]), "%lld %s %s raw %s level %s report %g",
                 (long long) ((ev->ts_ms - T0) / MIN_), ev->rule->id, ev->station->id, fh_level_name(ev->raw),
                 fh_level_name(ev->level), fh_program_eval(ev->rule->report, ev->env));
}

static void eval_hook_sees_every_evaluation_with_its_report_and_levels(void **state) {
        static const char *rule =
                "rules:\n"
                "  - id: gauge\n"
                "    kind: rain\n"
                "    levels:\n"
                "      yellow: sum(x, 10m) >= 2\n"
                "    report: sum(x, 10m)\n"
                "    for: 2m\n";
        rec r;
        evals x = { 0 };
        fh_engine *e = engine(rule, &r, NULL);

        fh_engine_set_eval_cb(e, on_eval, &x);
        feed(e, "A", 0, "x", 1);
        feed(e, "A", 1, "x", 1);
        feed(e, "A", 2, "x", 0);
        feed(e, "A", 3, "x", 0);
        feed(e, "B", 3, "y", 5);
        assert_int_equal(x.n, 5);
        assert_string_equal(x.lines[0], "0 gauge A raw none level none report 1");
        /* for: 2m holds the level back while the raw target is yellow. */
        assert_string_equal(x.lines[1], "1 gauge A raw yellow level none report 2");
        assert_string_equal(x.lines[2], "2 gauge A raw yellow level none report 2");
        assert_string_equal(x.lines[3], "3 gauge A raw yellow level yellow report 2");
        assert_string_equal(x.lines[4], "3 gauge B raw none level none report 0");
        assert_int_equal(r.n, 1);
        /* Unset, nothing is called. */
        fh_engine_set_eval_cb(e, NULL, NULL);
        feed(e, "A", 4, "x", 0);
        assert_int_equal(x.n, 5);
        fh_engine_free(e);
}

static void duplicate_reading_is_ignored_and_counted(void **state) {
        rec r;
        fh_engine *e = engine(levels_rule, &r, NULL);

        assert_int_equal(feed(e, "A", 0, "x", 1), FH_OUTCOME_ACCEPTED);
        assert_int_equal(feed(e, "A", 0, "x", 1), FH_OUTCOME_DUPLICATE);
        assert_int_equal(feed(e, "A", 5, "x", 0), FH_OUTCOME_ACCEPTED);
        assert_int_equal(feed(e, "A", 0, "x", 9), FH_OUTCOME_DUPLICATE);  /* held, older */
        assert_int_equal(r.n, 2);
        assert_int_equal(fh_engine_stats_get(e)->duplicates, 2);
        fh_engine_free(e);
}

static void late_reading_joins_the_window_and_evaluates_at_the_latest_time(void **state) {
        rec r;
        fh_engine *e = engine("rules:\n  - id: s\n    kind: rain\n    levels:\n      blue: sum(rain_mm, 1h) >= 50\n"
                              "    report: sum(rain_mm, 1h)\n", &r, NULL);

        feed(e, "A", 0, "rain_mm", 20);
        feed(e, "A", 30, "rain_mm", 20);
        assert_int_equal(feed(e, "A", 20, "rain_mm", 10), FH_OUTCOME_LATE);
        assert_int_equal(r.n, 1);
        assert_string_equal(r.lines[0], "raised s A blue 30");
        assert_non_null(strstr(r.json[0], "\"value\":50,"));
        assert_int_equal(fh_engine_stats_get(e)->late, 1);
        fh_engine_free(e);
}

static void reading_older_than_lateness_is_dropped(void **state) {
        rec r;
        fh_engine *e = engine(levels_rule, &r, NULL);

        feed(e, "A", 100, "x", 0);
        assert_int_equal(feed(e, "A", 40, "x", 0), FH_OUTCOME_LATE);      /* exactly 1h behind: late */
        assert_int_equal(feed(e, "A", 39, "x", 9), FH_OUTCOME_DROPPED);   /* more: dropped */
        assert_int_equal(r.n, 0);
        assert_int_equal(fh_engine_stats_get(e)->dropped, 1);
        assert_int_equal(fh_engine_stats_get(e)->late, 1);
        fh_engine_free(e);
}

static void last_is_by_timestamp_not_by_arrival(void **state) {
        rec r;
        fh_engine *e = engine(levels_rule, &r, NULL);

        feed(e, "A", 100, "x", 0);
        assert_int_equal(feed(e, "A", 41, "x", 9), FH_OUTCOME_LATE);
        assert_int_equal(r.n, 0);  /* evaluated at 100, where x is still 0 */
        fh_engine_free(e);
}

static const char *silence_rule =
        "rules:\n"
        "  - id: silent\n"
        "    kind: rain\n"
        "    levels:\n"
        "      yellow: age() > 600\n";

static void ticks_raise_silence_at_the_first_boundary_past_the_limit(void **state) {
        rec r;
        fh_engine *e = engine(silence_rule, &r, NULL);

        feed(e, "A", 0, "x", 0);
        for (int m = 1; m <= 12; m++)
                feed(e, "B", m, "x", 0);
        /* A: age 600 at 10 min is not > 600; at 11 min it is. */
        assert_int_equal(r.n, 1);
        assert_string_equal(r.lines[0], "raised silent A yellow 11");
        feed(e, "A", 13, "x", 0);  /* back: age 0 */
        assert_int_equal(r.n, 2);
        assert_string_equal(r.lines[1], "cleared silent A none 13");
        /* C never sent anything: never evaluated, never alerting */
        fh_engine_free(e);
}

static void tick_events_come_in_rule_then_sensor_order(void **state) {
        rec r;
        fh_engine *e = engine("rules:\n"
                              "  - id: zz\n    kind: rain\n    levels:\n      blue: age() >= 120\n"
                              "  - id: aa\n    kind: rain\n    levels:\n      blue: age() >= 120\n", &r, NULL);

        feed(e, "B", 0, "x", 0);
        feed(e, "A", 0, "x", 0);
        feed(e, "C", 0, "x", 0);
        feed(e, "W", 5, "level_m", 1);  /* moves the clock 0 -> 5 min */
        assert_int_equal(r.n, 6);
        assert_string_equal(r.lines[0], "raised aa A blue 2");
        assert_string_equal(r.lines[1], "raised aa B blue 2");
        assert_string_equal(r.lines[2], "raised aa C blue 2");
        assert_string_equal(r.lines[3], "raised zz A blue 2");
        assert_string_equal(r.lines[5], "raised zz C blue 2");
        fh_engine_free(e);
}

static void first_reading_only_sets_the_clock(void **state) {
        rec r;
        fh_engine_config cfg = FH_ENGINE_CONFIG_DEFAULT;
        fh_engine *e = engine(silence_rule, &r, &cfg);

        assert_true(fh_engine_clock(e) == FH_TIME_NONE);
        feed(e, "A", 0, "x", 0);
        assert_true(fh_engine_clock(e) == T0);
        assert_int_equal(fh_engine_stats_get(e)->evaluations, 1);
        fh_engine_free(e);
}

static void a_clock_jump_of_centuries_does_not_hang(void **state) {
        rec r;
        fh_engine_config cfg = FH_ENGINE_CONFIG_DEFAULT;
        cfg.max_ticks_per_advance = 1000;
        fh_engine *e = engine(silence_rule, &r, &cfg);

        feed(e, "A", 0, "x", 0);
        feed(e, "B", 500LL * 365 * 24 * 60, "x", 0);
        assert_int_equal(r.n, 1);
        assert_true(fh_engine_stats_get(e)->ticks_skipped > 0);
        fh_engine_free(e);
}

static void events_of_one_reading_come_in_rule_id_order(void **state) {
        rec r;
        fh_engine *e = engine("rules:\n"
                              "  - id: b_rule\n    kind: rain\n    levels:\n      blue: x > 0\n"
                              "  - id: a_rule\n    kind: rain\n    levels:\n      red: x > 0\n", &r, NULL);

        feed(e, "A", 0, "x", 1);
        assert_int_equal(r.n, 2);
        assert_string_equal(r.lines[0], "raised a_rule A red 0");
        assert_string_equal(r.lines[1], "raised b_rule A blue 0");
        fh_engine_free(e);
}

/* The daemon holds a message uncommitted until its alerts are delivered:
 * fh_engine_ingest_to gives a reading's alerts (the event-clock ticks it
 * runs included) to the caller's function with the caller's context, and
 * nothing to the engine's callback; a later external tick goes to the
 * engine's callback. */
static void ingest_to_gives_the_readings_alerts_to_the_callers_function(void **state) {
        rec r, mine;
        fh_engine_config cfg = FH_ENGINE_CONFIG_DEFAULT;
        fh_engine *e = engine("rules:\n"
                              "  - id: g\n    kind: rain\n    levels:\n      blue: x >= 1\n"
                              "  - id: q\n    kind: rain\n    levels:\n      yellow: age() > 300\n", &r, &cfg);
        fh_reading rd = { 0 };

        memset(&mine, 0, sizeof(mine));
        mine.e = e;
        feed(e, "B", 0, "x", 0);
        /* A's reading at 10 min runs the ticks that find B silent first. */
        snprintf(rd.sensor, sizeof(rd.sensor), "A");
        rd.sensor_len = 1;
        rd.ts_ms = T0 + 10 * MIN_;
        rd.n_values = 1;
        snprintf(rd.values[0].name, sizeof(rd.values[0].name), "x");
        rd.values[0].name_len = 1;
        rd.values[0].v = 1;
        assert_int_equal(fh_engine_ingest_to(e, &rd, on_alert, &mine), FH_OUTCOME_ACCEPTED);
        assert_int_equal(r.n, 0);
        assert_int_equal(mine.n, 2);
        assert_string_equal(mine.lines[0], "raised q B yellow 6");
        assert_string_equal(mine.lines[1], "raised g A blue 10");
        /* Readings through fh_engine_ingest, ticks included, go to the
         * engine's callback. */
        feed(e, "A", 20, "x", 1);
        assert_int_equal(mine.n, 2);
        assert_int_equal(r.n, 2);
        assert_string_equal(r.lines[0], "raised q A yellow 16");
        assert_string_equal(r.lines[1], "cleared q A none 20");
        fh_engine_free(e);
}

static void alert_id_stays_from_raise_to_clear(void **state) {
        rec r;
        fh_engine *e = engine(levels_rule, &r, NULL);

        feed(e, "A", 1, "x", 1);
        feed(e, "A", 2, "x", 4);
        feed(e, "A", 3, "x", 0);
        feed(e, "A", 4, "x", 1);
        assert_int_equal(r.n, 4);
        char want1[64], want2[64];
        snprintf(want1, sizeof(want1), "\"alert_id\":\"gauge:A:%lld\"", T0 + MIN_);
        snprintf(want2, sizeof(want2), "\"alert_id\":\"gauge:A:%lld\"", T0 + 4 * MIN_);
        assert_non_null(strstr(r.json[0], want1));
        assert_non_null(strstr(r.json[1], want1));
        assert_non_null(strstr(r.json[2], want1));
        assert_non_null(strstr(r.json[3], want2));
        fh_engine_free(e);
}

static void alert_json_has_every_field_of_the_contract(void **state) {
        rec r;
        fh_engine *e = engine("rules:\n  - id: rainstorm\n    title: 暴雨预警\n    kind: rain\n"
                              "    match: {region: miyun}\n"
                              "    levels:\n      orange: sum(rain_mm, 3h) >= 50\n"
                              "    report: sum(rain_mm, 3h)\n"
                              "    message: \"{station.name}站3小时降雨{value}毫米，达到暴雨{level_cn}预警标准\"\n", &r, NULL);

        feed(e, "A", 0, "rain_mm", 30);
        feed(e, "A", 60, "rain_mm", 33.5);
        feed(e, "C", 60, "rain_mm", 99);  /* region other: no rule */
        assert_int_equal(r.n, 1);
        assert_string_equal(r.json[0],
                "{\"alert_id\":\"rainstorm:A:1690650000000\",\"event\":\"raised\",\"rule\":\"rainstorm\","
                "\"sensor\":\"A\",\"level\":\"orange\",\"previous\":\"none\",\"severity\":2,"
                "\"ts\":\"2023-07-30T01:00:00+08:00\",\"value\":63.5,\"title\":\"暴雨预警\","
                "\"station\":{\"name\":\"甲站\",\"region\":\"miyun\"},"
                "\"message\":\"甲站站3小时降雨63.5毫米，达到暴雨橙色预警标准\"}");
        fh_engine_free(e);
}

static void station_attribute_a_station_lacks_makes_comparisons_false(void **state) {
        rec r;
        fh_engine *e = engine("rules:\n  - id: w\n    kind: rain\n    levels:\n"
                              "      yellow: x >= station.warning_level\n"
                              "      blue: not (x < station.warning_level)\n", &r, NULL);

        /* A has no warning_level: both comparisons are false, so `not` is true */
        feed(e, "A", 0, "x", 1);
        assert_int_equal(r.n, 1);
        assert_string_equal(r.lines[0], "raised w A blue 0");
        fh_engine_free(e);
}

static void snapshot_and_restore_continue_exactly_where_they_left_off(void **state) {
        const char *yaml =
                "rules:\n"
                "  - id: s\n    kind: rain\n    for: 20m\n    clear_after: 30m\n    levels:\n"
                "      red: sum(rain_mm, 1h) >= 40\n      blue: max(rain_mm, 2h) >= 5\n"
                "  - id: q\n    kind: rain\n    levels:\n      yellow: age() > 300\n";
        static rec whole, a, b;
        fh_engine *e = engine(yaml, &whole, NULL);
        double rain[] = { 0, 6, 3, 12, 15, 20, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0 };

        for (int i = 0; i < 20; i++) {
                feed(e, "A", i * 10, "rain_mm", rain[i]);
                feed(e, "B", i * 10 + (i % 3 ? 0 : 9), "rain_mm", rain[i] / 2);
        }
        fh_engine_free(e);
        assert_true(whole.n >= 4);

        e = engine(yaml, &a, NULL);
        for (int i = 0; i < 8; i++) {
                feed(e, "A", i * 10, "rain_mm", rain[i]);
                feed(e, "B", i * 10 + (i % 3 ? 0 : 9), "rain_mm", rain[i] / 2);
        }
        fh_buf snap = FH_BUF_NULL;
        fh_engine_snapshot(e, NULL, NULL, &snap);
        fh_engine_free(e);

        e = engine(yaml, &b, NULL);
        assert_int_equal(fh_engine_restore(e, snap.data, snap.len), 0);
        for (int i = 8; i < 20; i++) {
                feed(e, "A", i * 10, "rain_mm", rain[i]);
                feed(e, "B", i * 10 + (i % 3 ? 0 : 9), "rain_mm", rain[i] / 2);
        }
        fh_engine_free(e);

        assert_int_equal(a.n + b.n, whole.n);
        for (int i = 0; i < whole.n; i++)
                assert_string_equal(i < a.n ? a.json[i] : b.json[i - a.n], whole.json[i]);

        /* A corrupt snapshot is refused whole. */
        e = engine(yaml, &b, NULL);
        snap.data[snap.len / 2] ^= 0x55;
        assert_int_equal(fh_engine_restore(e, snap.data, snap.len), -EBADMSG);
        assert_int_equal(fh_engine_restore(e, snap.data, 10), -EBADMSG);
        fh_engine_free(e);
        fh_buf_free(&snap);
}

static fh_model *model(const char *yaml, const char *csv) {
        fh_diags d = FH_DIAGS_NULL;
        fh_ruleset *rs;
        fh_registry *reg;
        fh_model *m;

        assert_int_equal(fh_ruleset_new(&rs), 0);
        assert_int_equal(fh_ruleset_parse(rs, "t.yaml", yaml, strlen(yaml), &d), 0);
        assert_int_equal(fh_ruleset_finish(rs, &d), 0);
        assert_int_equal(fh_registry_parse("s.csv", csv, strlen(csv), &reg, &d), 0);
        assert_int_equal(fh_model_new(&m, rs, reg, &d), 0);
        fh_diags_clear(&d);
        return m;
}

static fh_engine *shard(fh_model *m, rec *r, const fh_engine_config *cfg) {
        fh_engine *e;

        assert_int_equal(fh_engine_new_shared(&e, m, cfg), 0);
        memset(r, 0, sizeof(*r));
        r->e = e;
        fh_engine_set_alert_cb(e, on_alert, r);
        return e;
}

/* The lines of r about one sensor, in order, one string. */
static void lines_of(const rec *r, const char *sensor, char *out, size_t n) {
        char want[8];
        size_t len = 0;

        snprintf(want, sizeof(want), " %s ", sensor);
        out[0] = '\0';
        for (int i = 0; i < r->n; i++)
                if (strstr(r->lines[i], want))
                        len += (size_t) snprintf(out + len, n - len, "%s\n", r->lines[i]);
}

static bool sensor_is(void *userdata, const fh_station *st) {
        return !strcmp(st->id, userdata);
}

static void snapshot_restored(fh_model *m, const fh_buf *snap, fh_buf *out) {
        rec r;
        fh_engine_config cfg = FH_ENGINE_CONFIG_DEFAULT;
        cfg.clock = FH_CLOCK_EXTERNAL;
        fh_engine *e = shard(m, &r, &cfg);
        assert_int_equal(fh_engine_restore(e, snap->data, snap->len), 0);
        fh_engine_snapshot(e, NULL, NULL, out);
        fh_engine_free(e);
}

/* A daemon's shards: engines sharing one model, each fed its own sensors
 * and ticked at the same times, make for each (rule, sensor) exactly what
 * one engine fed everything makes; the union of their state is one
 * snapshot, the same as the one engine's, and restores into shards again
 * sensor by sensor. */
static void shards_of_one_model_make_what_one_engine_makes(void **state) {
        const char *yaml =
                "rules:\n"
                "  - id: s\n    kind: rain\n    for: 20m\n    clear_after: 30m\n    levels:\n"
                "      red: sum(rain_mm, 1h) >= 40\n      blue: max(rain_mm, 2h) >= 5\n"
                "  - id: q\n    kind: rain\n    levels:\n      yellow: age() > 1500\n";
        static rec whole, ra, rb, rc, rd;
        double rain[] = { 0, 6, 3, 12, 15, 20, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0 };
        fh_engine_config cfg = FH_ENGINE_CONFIG_DEFAULT;
        cfg.clock = FH_CLOCK_EXTERNAL;
        fh_model *m = model(yaml, stations_csv);
        fh_engine *one = shard(m, &whole, &cfg), *a = shard(m, &ra, &cfg), *b = shard(m, &rb, &cfg);

        for (int i = 0; i < 20; i++) {
                int64_t tb = i * 10 + (i % 3 ? 0 : 9);
                fh_engine_tick(one, T0 + i * 10 * MIN_);
                fh_engine_tick(a, T0 + i * 10 * MIN_);
                fh_engine_tick(b, T0 + i * 10 * MIN_);
                if (i < 6 || i > 12) {   /* A silent in between: age() */
                        feed(one, "A", i * 10, "rain_mm", rain[i]);
                        feed(a, "A", i * 10, "rain_mm", rain[i]);
                }
                feed(one, "B", tb, "rain_mm", rain[i] / 2);
                feed(b, "B", tb, "rain_mm", rain[i] / 2);
        }
        char w[4096], got[4096];
        lines_of(&whole, "A", w, sizeof(w));
        lines_of(&ra, "A", got, sizeof(got));
        assert_string_equal(got, w);
        lines_of(&whole, "B", w, sizeof(w));
        lines_of(&rb, "B", got, sizeof(got));
        assert_string_equal(got, w);
        assert_int_equal(ra.n + rb.n, whole.n);
        assert_true(strstr(w, "raised q B") == NULL && ra.n >= 3);

        /* The union of the shards is the one engine's state. */
        const fh_engine *both[] = { a, b };
        fh_buf s1 = FH_BUF_NULL, s2 = FH_BUF_NULL, r1 = FH_BUF_NULL, r2 = FH_BUF_NULL;
        fh_engine_snapshot(one, NULL, NULL, &s1);
        fh_engine_snapshot_many(both, 2, NULL, NULL, &s2);
        snapshot_restored(m, &s1, &r1);
        snapshot_restored(m, &s2, &r2);
        assert_int_equal(r1.len, r2.len);
        assert_memory_equal(r1.data, r2.data, r1.len);

        /* Restored sensor by sensor into two new shards, they go on as the
         * one engine does. */
        fh_engine *c = shard(m, &rc, &cfg), *d = shard(m, &rd, &cfg);
        assert_int_equal(fh_engine_restore_some(c, s2.data, s2.len, sensor_is, "A", NULL, NULL), 0);
        assert_int_equal(fh_engine_restore_some(d, s2.data, s2.len, sensor_is, "B", NULL, NULL), 0);
        int n_whole = whole.n;
        for (int i = 20; i < 30; i++) {
                fh_engine_tick(one, T0 + i * 10 * MIN_);
                fh_engine_tick(c, T0 + i * 10 * MIN_);
                fh_engine_tick(d, T0 + i * 10 * MIN_);
                feed(one, "A", i * 10, "rain_mm", 30);
                feed(c, "A", i * 10, "rain_mm", 30);
                feed(one, "B", i * 10, "rain_mm", i == 25 ? 45 : 0);
                feed(d, "B", i * 10, "rain_mm", i == 25 ? 45 : 0);
        }
        assert_true(whole.n > n_whole);
        assert_int_equal(rc.n + rd.n, whole.n - n_whole);
        for (int i = n_whole, ic = 0, id = 0; i < whole.n; i++) {
                if (strstr(whole.lines[i], " A "))
                        assert_string_equal(rc.lines[ic++], whole.lines[i]);
                else
                        assert_string_equal(rd.lines[id++], whole.lines[i]);
        }
        fh_buf_free(&s1);
        fh_buf_free(&s2);
        fh_buf_free(&r1);
        fh_buf_free(&r2);
        /* The model goes with its last engine, whatever the order. */
        fh_model_unref(m);
        fh_engine_free(one);
        fh_engine_free(c);
        fh_engine_free(a);
        fh_engine_free(d);
        fh_engine_free(b);
}

/* N shards must not cost N registries: an engine holds state only for the
 * sensors it has seen, and forgetting them gives their memory back. */
static void an_engine_holds_state_only_for_the_sensors_it_has_seen(void **state) {
        fh_buf csv = FH_BUF_NULL;
        rec r;

        fh_buf_puts(&csv, "id,kind,name\n");
        for (int i = 0; i < 20000; i++)
                fh_buf_printf(&csv, "S%d,rain,s\n", i);
        fh_buf_putc(&csv, '\0');
        fh_model *m = model("rules:\n  - id: s\n    kind: rain\n    levels:\n"
                            "      red: sum(rain_mm, 1h) >= 40\n      blue: max(rain_mm, 2h) >= 5\n", csv.data);
        fh_engine *e = shard(m, &r, NULL);
        size_t empty = fh_engine_memory(e);
        /* A pointer a station, no more. */
        assert_true(empty <= 20000 * sizeof(void *) + 4096);
        feed(e, "S7", 0, "rain_mm", 1);
        feed(e, "S19999", 0, "rain_mm", 1);
        size_t two = fh_engine_memory(e);
        assert_true(two > empty && two - empty < 8192);
        fh_engine_forget(e, NULL, NULL);
        assert_int_equal(fh_engine_memory(e), empty);
        fh_engine_free(e);
        fh_model_unref(m);
        fh_buf_free(&csv);
}

static void restore_keeps_windows_but_resets_the_state_of_a_changed_rule(void **state) {
        rec a, b;
        fh_engine *e = engine("rules:\n  - id: s\n    kind: rain\n    levels:\n      blue: sum(rain_mm, 1h) >= 10\n", &a, NULL);
        fh_buf snap = FH_BUF_NULL;

        feed(e, "A", 0, "rain_mm", 12);   /* raised */
        fh_engine_snapshot(e, NULL, NULL, &snap);
        fh_engine_free(e);

        e = engine("rules:\n  - id: s\n    kind: rain\n    levels:\n      blue: sum(rain_mm, 1h) >= 20\n", &b, NULL);
        assert_int_equal(fh_engine_restore(e, snap.data, snap.len), 0);
        feed(e, "A", 10, "rain_mm", 9);   /* window kept: 21 >= 20; state reset: raised again */
        assert_int_equal(b.n, 1);
        assert_string_equal(b.lines[0], "raised s A blue 10");
        fh_engine_free(e);
        fh_buf_free(&snap);
}

/* ---- restore of crafted snapshots (found by fuzz/fuzz_restore.c) ---- */

/* What a snapshot carries for one (rule, sensor) pair. */
typedef struct snap_pair {
        uint8_t level;
        int64_t run[FH_LEVEL__MAX];
        int64_t wait, raised;
        uint8_t last_event, last_previous;
        int64_t last_ts;
} snap_pair;

/* A version-2 snapshot (snapshot.c) of sensor A: its recent timestamps,
 * samples of rain_mm, and the state of rule id (hash from e). */
static void craft(fh_buf *b, const fh_engine *e, const char *id, int64_t latest, const int64_t *recent,
                  uint32_t n_recent, const int64_t *samples, uint32_t n_samples, const snap_pair *p) {
        const fh_rule *rule = fh_ruleset_find(fh_engine_rules(e), id);

        fh_buf_reset(b);
        fh_buf_append(b, "FHSNAP01", 8);
        fh_buf_u32(b, 2);
        fh_buf_u64(b, (uint64_t) latest);
        fh_buf_u32(b, 1);
        fh_buf_str(b, "A", 1);
        fh_buf_u64(b, (uint64_t) latest);
        fh_buf_u32(b, n_recent);
        for (uint32_t i = 0; i < n_recent; i++)
                fh_buf_u64(b, (uint64_t) recent[i]);
        fh_buf_u32(b, 1);
        fh_buf_str(b, "rain_mm", 7);
        fh_buf_u32(b, n_samples);
        for (uint32_t i = 0; i < n_samples; i++) {
                fh_buf_u64(b, (uint64_t) samples[i]);
                fh_buf_f64(b, 1.0);
        }
        fh_buf_u32(b, 1);
        fh_buf_str(b, id, strlen(id));
        fh_buf_u64(b, rule->hash);
        fh_buf_u8(b, p->level);
        for (int l = 0; l < FH_LEVEL__MAX; l++)
                fh_buf_u64(b, (uint64_t) p->run[l]);
        fh_buf_u64(b, (uint64_t) p->wait);
        fh_buf_u64(b, (uint64_t) p->raised);
        fh_buf_u8(b, p->last_event);
        fh_buf_u8(b, p->last_previous);
        fh_buf_u64(b, (uint64_t) p->last_ts);
        fh_buf_f64(b, 1.0);
        fh_buf_u64(b, fh_checksum(b->data, b->len));
}

static const char *crafted_rule =
        "rules:\n  - id: s\n    kind: rain\n    for: 10m\n    clear_after: 10m\n"
        "    levels:\n      blue: sum(rain_mm, 1h) >= 1\n";

static snap_pair pair_none(void) {
        snap_pair p = { .level = FH_LEVEL_NONE, .wait = FH_TIME_NONE, .raised = FH_TIME_NONE, .last_ts = FH_TIME_NONE };
        for (int l = 0; l < FH_LEVEL__MAX; l++)
                p.run[l] = FH_TIME_NONE;
        return p;
}

static void restore_refuses_times_that_would_overflow_the_next_evaluation(void **state) {
        rec r;
        fh_engine *e = engine(crafted_rule, &r, NULL);
        fh_buf b = FH_BUF_NULL;
        int64_t t = T0, samples[] = { T0 - MIN_, T0 };
        snap_pair p = pair_none();

        /* The crafted snapshot is well-formed: with sane times it restores. */
        p.run[FH_LEVEL_BLUE] = T0 - 5 * MIN_;
        craft(&b, e, "s", t, &t, 1, samples, 2, &p);
        assert_int_equal(fh_engine_restore(e, b.data, b.len), 0);
        feed(e, "A", 5, "rain_mm", 1);     /* the run started 10 min ago: raised */
        assert_int_equal(r.n, 1);
        assert_string_equal(r.lines[0], "raised s A blue 5");

        /* A run, wait, raise or event time that is no time at all. */
        int64_t bad[] = { INT64_MIN + 1, INT64_MAX, FH_TIME_MIN_MS - 1, FH_TIME_MAX_MS + 1 };
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                for (int field = 0; field < 4; field++) {
                        p = pair_none();
                        if (field == 0)
                                p.run[FH_LEVEL_BLUE] = bad[i];
                        else if (field == 1)
                                p.wait = bad[i];
                        else {
                                p.level = FH_LEVEL_BLUE;
                                p.raised = field == 2 ? bad[i] : T0;
                                p.last_ts = field == 3 ? bad[i] : T0;
                        }
                        craft(&b, e, "s", t, &t, 1, samples, 2, &p);
                        assert_int_equal(fh_engine_restore(e, b.data, b.len), -EBADMSG);
                }
        }
        /* The same for the clock, the duplicate horizon and the samples. */
        p = pair_none();
        int64_t old = FH_TIME_MIN_MS - 1, early[] = { INT64_MIN + 1, T0 };
        craft(&b, e, "s", t, &old, 1, samples, 2, &p);
        assert_int_equal(fh_engine_restore(e, b.data, b.len), -EBADMSG);
        craft(&b, e, "s", t, &t, 1, early, 2, &p);
        assert_int_equal(fh_engine_restore(e, b.data, b.len), -EBADMSG);
        craft(&b, e, "s", t, &t, 1, samples, 2, &p);
        memcpy(b.data + 12, &(int64_t) { INT64_MIN + 5 }, 8);   /* the clock */
        uint64_t sum = fh_checksum(b.data, b.len - 8);
        memcpy(b.data + b.len - 8, &sum, 8);
        assert_int_equal(fh_engine_restore(e, b.data, b.len), -EBADMSG);

        /* Nothing of the refused snapshots reached the engine. */
        feed(e, "A", 6, "rain_mm", 1);
        assert_int_equal(r.n, 1);
        fh_engine_free(e);
        fh_buf_free(&b);
}

static void restore_refuses_state_no_engine_writes(void **state) {
        rec r;
        fh_engine *e = engine(crafted_rule, &r, NULL);
        fh_buf b = FH_BUF_NULL;
        int64_t t = T0, samples[] = { T0 - MIN_, T0 };
        int64_t unsorted[] = { T0 - MIN_, T0 - 2 * MIN_ }, twice[] = { T0, T0 }, ahead[] = { T0 + 1 };
        snap_pair p = pair_none();

        /* Duplicate timestamps out of order (a quadratic insertion on a large
         * crafted list), twice, or after the sensor's latest. */
        craft(&b, e, "s", t, unsorted, 2, samples, 2, &p);
        assert_int_equal(fh_engine_restore(e, b.data, b.len), -EBADMSG);
        craft(&b, e, "s", t, twice, 2, samples, 2, &p);
        assert_int_equal(fh_engine_restore(e, b.data, b.len), -EBADMSG);
        craft(&b, e, "s", t, ahead, 1, samples, 2, &p);
        assert_int_equal(fh_engine_restore(e, b.data, b.len), -EBADMSG);
        /* An open alert without an alert_id, or a closed one with one. */
        p.level = FH_LEVEL_BLUE;
        p.last_ts = T0;
        craft(&b, e, "s", t, &t, 1, samples, 2, &p);
        assert_int_equal(fh_engine_restore(e, b.data, b.len), -EBADMSG);
        p = pair_none();
        p.raised = T0;
        craft(&b, e, "s", t, &t, 1, samples, 2, &p);
        assert_int_equal(fh_engine_restore(e, b.data, b.len), -EBADMSG);
        /* A count of timestamps far beyond the bytes that follow. */
        p = pair_none();
        craft(&b, e, "s", t, &t, 1, samples, 2, &p);
        memcpy(b.data + 8 + 4 + 8 + 4 + 4 + 1 + 8, &(uint32_t) { 50000000 }, 4);
        uint64_t sum = fh_checksum(b.data, b.len - 8);
        memcpy(b.data + b.len - 8, &sum, 8);
        assert_int_equal(fh_engine_restore(e, b.data, b.len), -EBADMSG);
        fh_engine_free(e);
        fh_buf_free(&b);
}

/* A sensor whose rules read no window (only age()) has no stores: its
 * restore touched a null array (UBSan, fuzz_engine). And a snapshot of a
 * restored engine is the same bytes as the snapshot it came from, even
 * when a store still held a sample outside every window. */
static void snapshot_of_a_restored_engine_is_the_same_bytes(void **state) {
        const char *yaml = "rules:\n  - id: q\n    kind: rain\n    levels:\n      yellow: age() > 300\n"
                           "  - id: w\n    kind: water_level\n    levels:\n      red: avg(level_m, 10m) > 1\n";
        rec a, b;
        fh_engine *e = engine(yaml, &a, NULL);
        fh_buf s1 = FH_BUF_NULL, s2 = FH_BUF_NULL;

        feed(e, "A", 0, "rain_mm", 1);
        feed(e, "W", 0, "level_m", 3);
        feed(e, "W", 60, "level_m", 0);    /* the sample at 0 is outside the 10m window */
        fh_engine_snapshot(e, NULL, NULL, &s1);
        fh_engine_free(e);
        e = engine(yaml, &b, NULL);
        assert_int_equal(fh_engine_restore(e, s1.data, s1.len), 0);
        fh_engine_snapshot(e, NULL, NULL, &s2);
        assert_int_equal(s1.len, s2.len);
        assert_memory_equal(s1.data, s2.data, s1.len);
        fh_engine_free(e);
        fh_buf_free(&s1);
        fh_buf_free(&s2);
}

static fh_engine *engine_on(const char *yaml, const char *csv, rec *r) {
        fh_diags d = FH_DIAGS_NULL;
        fh_ruleset *rs;
        fh_registry *reg;
        fh_engine *e;

        assert_int_equal(fh_ruleset_new(&rs), 0);
        assert_int_equal(fh_ruleset_parse(rs, "t.yaml", yaml, strlen(yaml), &d), 0);
        assert_int_equal(fh_ruleset_finish(rs, &d), 0);
        assert_int_equal(fh_registry_parse("s.csv", csv, strlen(csv), &reg, &d), 0);
        assert_int_equal(fh_engine_new(&e, rs, reg, NULL, &d), 0);
        fh_diags_clear(&d);
        memset(r, 0, sizeof(*r));
        r->e = e;
        fh_engine_set_alert_cb(e, on_alert, r);
        return e;
}

static void count_active(void *ud, const fh_alert *a) {
        (void) a;
        (*(int *) ud)++;
}

/* A reload ends, with an explicit `cleared`, every open alert that the new
 * rules and stations do not carry over, and says why; the rest carry on. */
static void a_reload_ends_the_alerts_of_changed_removed_and_unmatched_rules(void **state) {
        static const char *const csv_old =
                "id,kind,name,region\nA,rain,甲站,miyun\nB,rain,乙站,miyun\nC,rain,丙站,other\n";
        /* B gone; C moved out of the "other" region. */
        static const char *const csv_new = "id,kind,name,region\nA,rain,甲站,miyun\nC,rain,丙站,miyun\n";
        static const char *const rules_old =
                "rules:\n"
                "  - id: chg\n    kind: rain\n    levels:\n      blue: x >= 1\n    report: x\n"
                "  - id: gone\n    kind: rain\n    levels:\n      blue: x >= 1\n"
                "  - id: keep\n    kind: rain\n    levels:\n      blue: x >= 1\n"
                "  - id: loc\n    kind: rain\n    match: {region: other}\n    levels:\n      blue: x >= 1\n";
        static const char *const rules_new =
                "rules:\n"
                "  - id: chg\n    kind: rain\n    levels:\n      blue: x >= 2\n    report: x\n"
                "  - id: keep\n    kind: rain\n    levels:\n      blue: x >= 1\n"
                "  - id: loc\n    kind: rain\n    match: {region: other}\n    levels:\n      blue: x >= 1\n";
        rec a, b;
        fh_buf snap = FH_BUF_NULL;
        int active = 0;

        (void) state;
        fh_engine *old = engine_on(rules_old, csv_old, &a);
        feed(old, "A", 0, "x", 1);
        feed(old, "B", 0, "x", 1);
        feed(old, "C", 0, "x", 1);
        assert_int_equal(a.n, 10);   /* chg, gone, keep for A, B, C; loc for C */
        fh_engine *ne = engine_on(rules_new, csv_new, &b);
        fh_engine_snapshot(old, NULL, NULL, &snap);
        assert_int_equal(fh_engine_restore(ne, snap.data, snap.len), 0);

        a.n = 0;
        fh_engine_end_orphans(old, ne, T0 + 30 * MIN_);
        assert_int_equal(a.n, 8);
        assert_string_equal(a.lines[0], "cleared chg A none 30");
        assert_string_equal(a.lines[1], "cleared chg B none 30");
        assert_string_equal(a.lines[2], "cleared chg C none 30");
        assert_string_equal(a.lines[3], "cleared gone A none 30");
        assert_string_equal(a.lines[4], "cleared gone B none 30");
        assert_string_equal(a.lines[5], "cleared gone C none 30");
        assert_string_equal(a.lines[6], "cleared keep B none 30");
        assert_string_equal(a.lines[7], "cleared loc C none 30");
        assert_non_null(strstr(a.json[0], "\"alert_id\":\"chg:A:1690646400000\",\"event\":\"cleared\""));
        assert_non_null(strstr(a.json[0], "\"level\":\"none\",\"previous\":\"blue\",\"severity\":0,"
                                          "\"ts\":\"2023-07-30T00:30:00+08:00\",\"value\":null,"
                                          "\"reason\":\"rule_changed\","));
        assert_non_null(strstr(a.json[0], "\"message\":\"【chg】甲站（A）预警解除：预警规则已修改，"));
        assert_non_null(strstr(a.json[3], "\"reason\":\"rule_removed\""));
        assert_non_null(strstr(a.json[6], "\"reason\":\"station_removed\""));
        assert_non_null(strstr(a.json[7], "\"reason\":\"rule_unmatched\""));
        /* What the old engine still holds open is exactly what carries over. */
        fh_engine_foreach_active(old, count_active, &active);
        assert_int_equal(active, 2);
        active = 0;
        fh_engine_foreach_active(ne, count_active, &active);
        assert_int_equal(active, 2);   /* keep A, keep C */
        assert_int_equal(fh_engine_stats_get(old)->events[FH_EVENT_CLEARED], 8);

        /* Ending twice ends nothing more; an event of the state machine has
         * no reason. */
        fh_engine_end_orphans(old, ne, T0 + 31 * MIN_);
        assert_int_equal(a.n, 8);
        feed(ne, "A", 40, "x", 2);
        assert_int_equal(b.n, 1);
        assert_string_equal(b.lines[0], "raised chg A blue 40");
        assert_null(strstr(b.json[0], "\"reason\""));

        fh_engine_free(old);
        fh_engine_free(ne);
        fh_buf_free(&snap);
}

/* The closing event never comes before the pair's last event, whatever the
 * caller's clock says. */
static void a_reload_never_ends_an_alert_before_its_last_event(void **state) {
        rec a, b;
        fh_buf snap = FH_BUF_NULL;

        (void) state;
        fh_engine *old = engine("rules:\n  - id: s\n    kind: rain\n    levels:\n      blue: x >= 1\n", &a, NULL);
        fh_engine *ne = engine("rules:\n  - id: s\n    kind: rain\n    levels:\n      blue: x >= 5\n", &b, NULL);
        feed(old, "A", 100, "x", 1);
        fh_engine_snapshot(old, NULL, NULL, &snap);
        assert_int_equal(fh_engine_restore(ne, snap.data, snap.len), 0);
        fh_engine_end_orphans(old, ne, T0 + 50 * MIN_);
        assert_int_equal(a.n, 2);
        assert_string_equal(a.lines[1], "cleared s A none 100");
        fh_engine_free(old);
        fh_engine_free(ne);
        fh_buf_free(&snap);
}

static void unknown_sensor_is_rejected_without_changing_state(void **state) {
        rec r;
        fh_engine *e = engine(levels_rule, &r, NULL);

        assert_int_equal(feed(e, "NOPE", 0, "x", 9), FH_OUTCOME_UNKNOWN_SENSOR);
        assert_true(fh_engine_clock(e) == FH_TIME_NONE);
        assert_int_equal(fh_engine_stats_get(e)->rejected[FH_REJECT_UNKNOWN_SENSOR], 1);
        fh_engine_free(e);
}

/* Three rules whose levels read 300 different windows of one field: more
 * than 8 bits of window lengths on one store (issue 8). Every window must
 * still sum exactly what it holds. */
static void three_hundred_windows_on_one_field_each_sum_their_own_readings(void **state) {
        fh_buf y = FH_BUF_NULL;
        rec r;

        static const char *const lv[] = { "red", "orange", "yellow", "blue" };
        fh_buf_printf(&y, "rules:\n");
        for (int k = 0; k < 3; k++) {
                fh_buf_printf(&y, "  - id: r%d\n    kind: rain\n    levels:\n", k);
                /* 100 windows per rule, 25 per level: an expression holds at
                 * most 256 nodes. */
                for (int l = 0; l < 4; l++) {
                        fh_buf_printf(&y, "      %s: >-\n        x < 0", lv[l]);
                        for (int m = 1 + 100 * k + l; m <= 100 + 100 * k; m += 4)
                                fh_buf_printf(&y, " or sum(x, %dm) >= %d", m, 1000 + m);
                        fh_buf_printf(&y, "\n");
                }
                fh_buf_printf(&y, "    report: sum(x, %dm)\n", 100 + 100 * k);
        }
        fh_engine *e = engine(y.data, &r, NULL);
        fh_buf_free(&y);

        /* One reading a minute, value 1: sum(x, Nm) at minute 400 is N for
         * N <= 300, and `sum(x, Nm) >= 1000 + N` never holds. */
        for (int t = 0; t <= 400; t++)
                feed(e, "A", t, "x", 1);
        assert_int_equal(r.n, 0);
        /* A window of N minutes needs N + 1000 readings: give the 300-minute
         * window (the last one, far past 255) enough by making one reading
         * worth 1000 and check exactly which rule fires. */
        feed(e, "A", 401, "x", 1000);
        /* sum(x, Nm) = N - 1 + 1000 >= 1000 + N is false for every N ... */
        assert_int_equal(r.n, 0);
        feed(e, "A", 402, "x", 2);
        /* ... and now N - 2 + 1002 >= 1000 + N holds for every window: the
         * three rules fire, each reporting its own longest window. */
        assert_int_equal(r.n, 3);
        assert_string_equal(r.lines[0], "raised r0 A red 402");
        assert_string_equal(r.lines[1], "raised r1 A red 402");
        assert_string_equal(r.lines[2], "raised r2 A red 402");
        assert_non_null(strstr(r.json[0], "\"value\":1100"));
        assert_non_null(strstr(r.json[1], "\"value\":1200"));
        assert_non_null(strstr(r.json[2], "\"value\":1300"));
        fh_engine_free(e);
}

/* ---- per-sensor caps (issue 8 item 3) ---- */

static const char *count_rule =
        "rules:\n  - id: n\n    kind: rain\n    levels:\n      blue: count(x, 1h) >= 4\n"
        "      red: sum(x, 1h) >= 1000\n";

static void rate_cap_rejects_what_is_beyond_it_in_any_60_s_and_counts_it(void **state) {
        fh_engine_config cfg = FH_ENGINE_CONFIG_DEFAULT;
        rec r;
        cfg.max_readings_per_minute = 3;
        fh_engine *e = engine(count_rule, &r, &cfg);
        const fh_engine_stats *st = fh_engine_stats_get(e);

        assert_int_equal(feed_ms(e, "A", 0, "x", 1), FH_OUTCOME_ACCEPTED);
        assert_int_equal(feed_ms(e, "A", 10000, "x", 1), FH_OUTCOME_ACCEPTED);
        assert_int_equal(feed_ms(e, "A", 20000, "x", 1), FH_OUTCOME_ACCEPTED);
        /* A fourth within 60 s of the first, and a big value that would have
         * raised red: rejected, counted, and nothing of it stays. */
        assert_int_equal(feed_ms(e, "A", 59999, "x", 5000), FH_OUTCOME_RATE_LIMITED);
        assert_int_equal(st->rejected[FH_REJECT_RATE_LIMITED], 1);
        assert_int_equal(st->accepted, 3);
        assert_int_equal(r.n, 0);
        /* Late ones count too: 5 s fits no 60 s with three others. */
        assert_int_equal(feed_ms(e, "A", 5000, "x", 5000), FH_OUTCOME_RATE_LIMITED);
        /* Exactly 60 s after the first: a new minute. Its timestamp was not
         * taken by the rejected one (not a duplicate). */
        assert_int_equal(feed_ms(e, "A", 60000, "x", 1), FH_OUTCOME_ACCEPTED);
        assert_int_equal(r.n, 1);
        assert_string_equal(r.lines[0], "raised n A blue 1");
        /* Another gauge is not affected by A's flood. */
        for (int i = 0; i < 3; i++)
                assert_int_equal(feed_ms(e, "B", i * 1000, "x", 1), FH_OUTCOME_ACCEPTED);
        assert_int_equal(st->rejected[FH_REJECT_RATE_LIMITED], 2);
        /* The duplicate-detection timestamps stay bounded by the cap: a
         * gauge at 1000 readings/s for 10 minutes keeps 3 per minute. */
        for (int64_t t = 61000; t < 661000; t++)
                feed_ms(e, "A", t, "x", 0);
        assert_int_equal(st->rejected[FH_REJECT_RATE_LIMITED], 2 + 600000 - 30);
        fh_engine_free(e);
}

static void rate_cap_zero_is_no_cap(void **state) {
        fh_engine_config cfg = FH_ENGINE_CONFIG_DEFAULT;
        rec r;
        cfg.max_readings_per_minute = 0;
        fh_engine *e = engine(count_rule, &r, &cfg);

        for (int i = 0; i < 1000; i++)
                assert_int_equal(feed_ms(e, "A", i, "x", 0), FH_OUTCOME_ACCEPTED);
        fh_engine_free(e);
}

static void window_cap_rejects_a_reading_its_store_has_no_room_for(void **state) {
        fh_engine_config cfg = FH_ENGINE_CONFIG_DEFAULT;
        rec r;
        cfg.max_window_samples = 3;
        fh_engine *e = engine(count_rule, &r, &cfg);
        const fh_engine_stats *st = fh_engine_stats_get(e);

        for (int m = 0; m < 3; m++)
                assert_int_equal(feed(e, "A", m, "x", 1), FH_OUTCOME_ACCEPTED);
        assert_int_equal(feed(e, "A", 3, "x", 5000), FH_OUTCOME_WINDOW_FULL);
        assert_int_equal(feed(e, "A", 1, "x", 5000), FH_OUTCOME_DUPLICATE);
        assert_int_equal(feed_ms(e, "A", 30000, "x", 5000), FH_OUTCOME_WINDOW_FULL);   /* late */
        assert_int_equal(st->rejected[FH_REJECT_WINDOW_FULL], 2);
        assert_int_equal(r.n, 0);
        /* A field no rule reads has no store: no cap applies to it. */
        assert_int_equal(feed(e, "A", 4, "y", 1), FH_OUTCOME_ACCEPTED);
        /* Once the oldest have left the 1h window there is room again. */
        assert_int_equal(feed(e, "A", 61, "x", 1), FH_OUTCOME_ACCEPTED);
        assert_int_equal(feed(e, "A", 62, "x", 1), FH_OUTCOME_ACCEPTED);
        assert_int_equal(feed(e, "A", 63, "x", 1), FH_OUTCOME_ACCEPTED);
        assert_int_equal(feed_ms(e, "A", 63 * MIN_ + 30000, "x", 1), FH_OUTCOME_WINDOW_FULL);
        assert_int_equal(r.n, 0);   /* never 4 samples, never red */
        fh_engine_free(e);
}

static void defaults_fit_a_gauge_every_5_s_on_the_longest_default_window(void **state) {
        const fh_engine_config cfg = FH_ENGINE_CONFIG_DEFAULT;
        rec r;
        fh_engine *e = engine("rules:\n  - id: d\n    kind: rain\n    levels:\n      blue: sum(x, 1d) >= 1e9\n", &r, &cfg);

        assert_int_equal(cfg.max_readings_per_minute, 60);
        assert_int_equal(cfg.max_window_samples, 50000);
        /* Two days at one reading every 5 s, with a second gauge every
         * second: nothing rejected. */
        for (int64_t t = 0; t < 2 * 86400000LL; t += 5000)
                assert_int_equal(feed_ms(e, "A", t, "x", 0.1), FH_OUTCOME_ACCEPTED);
        for (int64_t t = 0; t < 600000; t += 1000)
                assert_int_equal(feed_ms(e, "B", t, "x", 0.1), FH_OUTCOME_ACCEPTED);
        assert_int_equal(fh_engine_stats_get(e)->rejected[FH_REJECT_RATE_LIMITED], 0);
        assert_int_equal(fh_engine_stats_get(e)->rejected[FH_REJECT_WINDOW_FULL], 0);
        fh_engine_free(e);
}

static void caps_survive_a_snapshot(void **state) {
        fh_engine_config cfg = FH_ENGINE_CONFIG_DEFAULT;
        rec r;
        fh_buf snap = FH_BUF_NULL;
        cfg.max_readings_per_minute = 2;
        fh_engine *e = engine(count_rule, &r, &cfg);

        feed_ms(e, "A", 0, "x", 1);
        feed_ms(e, "A", 1000, "x", 1);
        fh_engine_snapshot(e, NULL, NULL, &snap);
        fh_engine_free(e);
        e = engine(count_rule, &r, &cfg);
        assert_int_equal(fh_engine_restore(e, snap.data, snap.len), 0);
        assert_int_equal(feed_ms(e, "A", 2000, "x", 1), FH_OUTCOME_RATE_LIMITED);
        assert_int_equal(feed_ms(e, "A", 60000, "x", 1), FH_OUTCOME_ACCEPTED);
        fh_engine_free(e);
        fh_buf_free(&snap);
}

static void rejection_is_explained_in_one_line(void **state) {
        fh_engine_config cfg = FH_ENGINE_CONFIG_DEFAULT;
        rec r;
        fh_reading rd = { .sensor = "A", .sensor_len = 1 };
        char why[256];
        fh_engine *e = engine(count_rule, &r, &cfg);

        assert_int_equal(fh_outcome_reject(FH_OUTCOME_RATE_LIMITED), FH_REJECT_RATE_LIMITED);
        assert_int_equal(fh_outcome_reject(FH_OUTCOME_WINDOW_FULL), FH_REJECT_WINDOW_FULL);
        assert_int_equal(fh_outcome_reject(FH_OUTCOME_LATE), FH_REJECT_NONE);
        assert_string_equal(fh_reject_name(FH_REJECT_RATE_LIMITED), "rate_limited");
        assert_string_equal(fh_reject_name(FH_REJECT_WINDOW_FULL), "window_full");
        fh_engine_explain(e, &rd, FH_OUTCOME_RATE_LIMITED, why, sizeof(why));
        assert_string_equal(why, "sensor \"A\" sent more than 60 readings within 60 s (max_readings_per_minute)");
        fh_engine_explain(e, &rd, FH_OUTCOME_WINDOW_FULL, why, sizeof(why));
        assert_string_equal(why, "sensor \"A\" holds 50000 samples of a field in its windows (max_window_samples)");
        fh_engine_free(e);
}

/* The duplicate horizon keeps 32-bit times after a moving base: over 200
 * days (past 2^32 ms) with a 1 h lateness, and with a lateness of 60 days
 * (past 2^31 ms), every held time is still told apart from a new one. */
static void duplicates_are_found_over_months_and_with_a_lateness_of_months(void **state) {
        const int64_t late_min[2] = { 60, 60 * 24 * 60 };
        const int64_t step_min[2] = { 20, 60 * 24 };
        const int n[2] = { 200 * 24 * 3, 200 };

        for (int c = 0; c < 2; c++) {
                fh_engine_config cfg = FH_ENGINE_CONFIG_DEFAULT;
                rec r;
                cfg.lateness_ms = late_min[c] * MIN_;
                fh_engine *e = engine(levels_rule, &r, &cfg);
                for (int i = 0; i < n[c]; i++) {
                        int64_t t = i * step_min[c];
                        assert_int_equal(feed(e, "A", t, "x", 0), FH_OUTCOME_ACCEPTED);
                        if (i == 0)
                                continue;
                        /* a new time between the last two, then both again */
                        assert_int_equal(feed(e, "A", t - step_min[c] / 2, "x", 0), FH_OUTCOME_LATE);
                        assert_int_equal(feed(e, "A", t - step_min[c] / 2, "x", 0), FH_OUTCOME_DUPLICATE);
                        assert_int_equal(feed(e, "A", t - step_min[c], "x", 0), FH_OUTCOME_DUPLICATE);
                        assert_int_equal(feed(e, "A", t, "x", 0), FH_OUTCOME_DUPLICATE);
                }
                int64_t last = (n[c] - 1) * step_min[c];
                assert_int_equal(feed(e, "A", last - late_min[c] - 1, "x", 0), FH_OUTCOME_DROPPED);
                assert_int_equal(feed(e, "A", last - late_min[c], "x", 0),
                                 FH_OUTCOME_DUPLICATE);
                fh_engine_free(e);
        }
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(level_follows_the_raw_target_without_for_or_clear_after),
                cmocka_unit_test(for_raises_exactly_when_the_condition_has_held_that_long),
                cmocka_unit_test(clear_after_waits_exactly_and_restarts_when_interrupted),
                cmocka_unit_test(deescalation_waits_for_clear_after_and_escalation_does_not),
                cmocka_unit_test(highest_ready_level_wins_when_for_holds_back_a_higher_one),
                cmocka_unit_test(eval_hook_sees_every_evaluation_with_its_report_and_levels),
                cmocka_unit_test(duplicate_reading_is_ignored_and_counted),
                cmocka_unit_test(duplicates_are_found_over_months_and_with_a_lateness_of_months),
                cmocka_unit_test(late_reading_joins_the_window_and_evaluates_at_the_latest_time),
                cmocka_unit_test(reading_older_than_lateness_is_dropped),
                cmocka_unit_test(last_is_by_timestamp_not_by_arrival),
                cmocka_unit_test(ticks_raise_silence_at_the_first_boundary_past_the_limit),
                cmocka_unit_test(tick_events_come_in_rule_then_sensor_order),
                cmocka_unit_test(first_reading_only_sets_the_clock),
                cmocka_unit_test(a_clock_jump_of_centuries_does_not_hang),
                cmocka_unit_test(events_of_one_reading_come_in_rule_id_order),
                cmocka_unit_test(ingest_to_gives_the_readings_alerts_to_the_callers_function),
                cmocka_unit_test(alert_id_stays_from_raise_to_clear),
                cmocka_unit_test(alert_json_has_every_field_of_the_contract),
                cmocka_unit_test(station_attribute_a_station_lacks_makes_comparisons_false),
                cmocka_unit_test(snapshot_and_restore_continue_exactly_where_they_left_off),
                cmocka_unit_test(shards_of_one_model_make_what_one_engine_makes),
                cmocka_unit_test(an_engine_holds_state_only_for_the_sensors_it_has_seen),
                cmocka_unit_test(restore_keeps_windows_but_resets_the_state_of_a_changed_rule),
                cmocka_unit_test(unknown_sensor_is_rejected_without_changing_state),
                cmocka_unit_test(restore_refuses_times_that_would_overflow_the_next_evaluation),
                cmocka_unit_test(restore_refuses_state_no_engine_writes),
                cmocka_unit_test(snapshot_of_a_restored_engine_is_the_same_bytes),
                cmocka_unit_test(three_hundred_windows_on_one_field_each_sum_their_own_readings),
                cmocka_unit_test(rate_cap_rejects_what_is_beyond_it_in_any_60_s_and_counts_it),
                cmocka_unit_test(rate_cap_zero_is_no_cap),
                cmocka_unit_test(window_cap_rejects_a_reading_its_store_has_no_room_for),
                cmocka_unit_test(defaults_fit_a_gauge_every_5_s_on_the_longest_default_window),
                cmocka_unit_test(caps_survive_a_snapshot),
                cmocka_unit_test(rejection_is_explained_in_one_line),
                cmocka_unit_test(a_reload_ends_the_alerts_of_changed_removed_and_unmatched_rules),
                cmocka_unit_test(a_reload_never_ends_an_alert_before_its_last_event),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
