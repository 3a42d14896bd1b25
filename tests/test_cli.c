/* End to end: the real `fenghuo` binary on files, as an engineer runs it.
 * FENGHUO (the binary) and SRCDIR (the source tree) come from meson; the
 * paths and running the binary are in it_harness.c. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "it_harness.h"

typedef struct result {
        int code;
        char *out;
        size_t out_len;
        char *err;
} result;

/* Runs argv with stdin from in (or /dev/null); captures stdout and stderr. */
static result run(const char *in, const char *const *argv) {
        char out_path[512], err_path[512];
        result r = { 0 };

        snprintf(out_path, sizeof(out_path), "%s/out", it.tmpdir);
        snprintf(err_path, sizeof(err_path), "%s/err", it.tmpdir);
        r.code = it_run(argv, in, out_path, err_path);
        r.out = it_read_file(out_path, &r.out_len);
        r.err = it_read_file(err_path, NULL);
        return r;
}

static result sh(const char *cmd) {
        const char *argv[] = { "/bin/sh", "-c", cmd, NULL };
        return run(NULL, argv);
}

static void result_free(result *r) {
        free(r->out);
        free(r->err);
}

static char *path(const char *rel) {
        static char buf[8][512];
        static int k;
        k = (k + 1) % 8;
        snprintf(buf[k], sizeof(buf[k]), "%s/%s", it.src, rel);
        return buf[k];
}

/* One alert line reduced to what the timeline is about. */
static void summarise(const char *line, char *out, size_t n) {
        char ev[32] = "", rule[64] = "", sensor[64] = "", level[16] = "", ts[40] = "", value[32] = "";
        const char *p;

#define FIELD(name, dst)                                                                    \
        if ((p = strstr(line, "\"" name "\":"))) {                                          \
                p += strlen(name) + 3;                                                      \
                if (*p == '"')                                                              \
                        p++;                                                                \
                size_t i = 0;                                                               \
                while (p[i] && p[i] != '"' && p[i] != ',' && i + 1 < sizeof(dst))           \
                        i++;                                                                \
                memcpy(dst, p, i);                                                          \
                dst[i] = 0;                                                                 \
        }
        FIELD("event", ev);
        FIELD("rule", rule);
        FIELD("sensor", sensor);
        FIELD("level", level);
        FIELD("ts", ts);
        FIELD("value", value);
#undef FIELD
        snprintf(out, n, "%s %s %s %s %s %s", ev, rule, sensor, level, ts, value);
}

static void hand_worked_storm_gives_exactly_the_timeline_worked_out_by_hand(void **state) {
        /* Worked out by hand from tests/data/storm-small.jsonl:
         * G1 hourly rain 0,20,20,15,50,40 then 0: 3 h sums 55 at 03:00
         * (orange), 105 at 05:00 (red); below red from 06:00, so after
         * clear_after 1h it steps down at 07:00 to the raw target, yellow (6 h
         * = 125, 3 h = 40); the 6 h sum falls to 40 at 10:00, blue at 11:00;
         * the 12 h sum falls to 40 at 16:00, cleared at 17:00.
         * G2 silent from 02:00 to 05:00: age() > 5400 s first holds at the
         * tick boundary 03:31; it reports at 05:00 and clears.
         * R1 (warning 100, guarantee 102, for 20m, clear_after 30m): yellow
         * from 00:20, raised at 00:40; orange from 01:30 (01:20 broke the
         * run), escalated at 01:50; below orange from 02:00, back at 02:20,
         * below again from 02:30, down at 03:00; below warning from 03:10,
         * cleared at 03:40. Events of one time come in input order. */
        static const char *const want[] = {
                "raised river R1 yellow 2023-07-30T00:40:00+08:00 100.8",
                "escalated river R1 orange 2023-07-30T01:50:00+08:00 102.6",
                "raised rainstorm G1 orange 2023-07-30T03:00:00+08:00 55",
                "deescalated river R1 yellow 2023-07-30T03:00:00+08:00 100.1",
                "raised silent G2 blue 2023-07-30T03:31:00+08:00 null",
                "cleared river R1 none 2023-07-30T03:40:00+08:00 99.2",
                "escalated rainstorm G1 red 2023-07-30T05:00:00+08:00 105",
                "cleared silent G2 none 2023-07-30T05:00:00+08:00 null",
                "deescalated rainstorm G1 yellow 2023-07-30T07:00:00+08:00 40",
                "deescalated rainstorm G1 blue 2023-07-30T11:00:00+08:00 0",
                "cleared rainstorm G1 none 2023-07-30T17:00:00+08:00 0",
        };
        const char *argv[] = { it.bin, "replay", "--rules", path("tests/data/rules-small"),
                               "--stations", path("tests/data/stations-small.csv"),
                               path("tests/data/storm-small.jsonl"), NULL };
        result r = run(NULL, argv);
        char got[256];
        size_t i = 0;

        assert_int_equal(r.code, 0);
        for (char *line = strtok(r.out, "\n"); line; line = strtok(NULL, "\n"), i++) {
                assert_true(i < sizeof(want) / sizeof(want[0]));
                summarise(line, got, sizeof(got));
                assert_string_equal(got, want[i]);
        }
        assert_int_equal(i, sizeof(want) / sizeof(want[0]));
        assert_non_null(strstr(r.err, "145 accepted"));
        assert_non_null(strstr(r.err, "3 raised, 2 escalated, 3 deescalated, 3 cleared"));
        result_free(&r);
}

static void every_bad_reading_is_reported_with_its_line_and_reason(void **state) {
        char in[512];
        FILE *f;

        snprintf(in, sizeof(in), "%s/bad.jsonl", it.tmpdir);
        f = fopen(in, "we");
        fputs("{\"sensor\":\"G1\",\"ts\":\"2023-07-30T00:00:00+08:00\",\"values\":{\"rain_mm\":1}}\n"   /* 1 ok */
              "{\"sensor\":\"G1\",\"ts\":\"2023-07-30T00:10:00+08:00\",\"values\":{\"rain_mm\":1}\n"    /* 2 malformed */
              "{\"ts\":\"2023-07-30T00:10:00+08:00\",\"values\":{\"rain_mm\":1}}\n"                    /* 3 missing sensor */
              "{\"sensor\":\"G1\",\"ts\":\"2023-13-30T00:10:00+08:00\",\"values\":{\"rain_mm\":1}}\n"   /* 4 bad ts */
              "{\"sensor\":\"G1\",\"ts\":\"2023-07-30T00:10:00+08:00\",\"values\":{\"rain_mm\":\"1\"}}\n" /* 5 string value */
              "{\"sensor\":\"G1\",\"ts\":\"2023-07-30T00:10:00+08:00\",\"values\":{\"rain_mm\":1e999}}\n" /* 6 not finite */
              "{\"sensor\":\"NOPE\",\"ts\":\"2023-07-30T00:10:00+08:00\",\"values\":{\"rain_mm\":1}}\n" /* 7 unknown */
              "{\"sensor\":\"G1\",\"ts\":\"2023-07-30T00:10:00+08:00\",\"values\":{}}\n"               /* 8 empty values */
              "{\"sensor\":\"bad id!\",\"ts\":1690646400000,\"values\":{\"rain_mm\":1}}\n"               /* 9 bad sensor */
              "\n"                                                                                          /* 10 blank: skipped */
              "{\"sensor\":\"G1\",\"ts\":\"2023-07-30T00:00:00+08:00\",\"values\":{\"rain_mm\":1}}\n"   /* 11 duplicate */
              "{\"sensor\":\"G1\",\"ts\":1690650000000,\"values\":{\"rain_mm\":2}}\n"                   /* 12 ok, epoch ms */
              "{\"sensor\":\"G1\",\"ts\":\"2023-07-29T22:00:00+08:00\",\"values\":{\"rain_mm\":1}}\n"   /* 13 dropped */
              "{\"sensor\":\"G1\",\"ts\":\"2023-07-30T00:30:00+08:00\",\"values\":{\"rain_mm\":1}}\n"   /* 14 late */
              "{\"sensor\":\"G1\",\"ts\":\"2023-07-30T01:", f);                                          /* 15 truncated */
        for (int i = 0; i < 70000; i++)
                fputc('x', f);
        fputs("\n{\"sensor\":\"G2\",\"ts\":\"2023-07-30T00:00:00+08:00\",\"values\":{\"rain_mm\":0}}\n", f); /* 16 ok */
        fclose(f);

        const char *argv[] = { it.bin, "replay", "--rules", path("tests/data/rules-small"),
                               "--stations", path("tests/data/stations-small.csv"), in, NULL };
        result r = run(NULL, argv);

        assert_int_equal(r.code, 0);
        assert_non_null(strstr(r.err, "line 2: rejected (malformed_json)"));
        assert_non_null(strstr(r.err, "line 3: rejected (missing_field)"));
        assert_non_null(strstr(r.err, "line 4: rejected (bad_timestamp)"));
        assert_non_null(strstr(r.err, "line 5: rejected (bad_value)"));
        assert_non_null(strstr(r.err, "line 6: rejected (bad_value)"));
        assert_non_null(strstr(r.err, "line 7: rejected (unknown_sensor)"));
        assert_non_null(strstr(r.err, "line 8: rejected (bad_values)"));
        assert_non_null(strstr(r.err, "line 9: rejected (bad_sensor)"));
        assert_null(strstr(r.err, "line 10:"));
        assert_null(strstr(r.err, "line 11:"));
        assert_non_null(strstr(r.err, "line 15: rejected (too_long)"));
        assert_non_null(strstr(r.err, "16 lines, 4 accepted (1 late), 9 rejected"));
        assert_non_null(strstr(r.err, "1 duplicates, 1 dropped"));
        result_free(&r);
}

/* Issue 8: a gauge flooding at 10 readings/s for 10 minutes is held to
 * max_readings_per_minute (60 by default): the first 60 of each minute
 * count, the rest are rejected and counted as rate_limited in the summary,
 * and a storm on another gauge alerts exactly as without the flood. */
static void flooding_gauge_is_rate_limited_and_other_gauges_alert_as_before(void **state) {
        char flood[512], calm[512];
        FILE *f = NULL, *g = NULL;
        const int64_t t0 = 1690646400000LL;   /* 2023-07-30T00:00:00+08:00 */

        snprintf(flood, sizeof(flood), "%s/flood.jsonl", it.tmpdir);
        snprintf(calm, sizeof(calm), "%s/calm.jsonl", it.tmpdir);
        assert_non_null(f = fopen(flood, "we"));
        assert_non_null(g = fopen(calm, "we"));
        for (int64_t ms = 0; ms < 600000; ms += 100) {
                if (ms % 300000 == 0 || ms % 300000 == 200000) {
                        /* The storm: 20 mm every 5 minutes, twice a slot. */
                        const char *line = "{\"sensor\":\"MY-RG-0002\",\"ts\":%lld,\"values\":{\"rain_mm\":20}}\n";
                        fprintf(f, line, (long long) (t0 + ms));
                        fprintf(g, line, (long long) (t0 + ms));
                }
                fprintf(f, "{\"sensor\":\"MY-RG-0001\",\"ts\":%lld,\"values\":{\"rain_mm\":0}}\n",
                        (long long) (t0 + ms));
        }
        for (int64_t ms = 600000; ms <= 3600000; ms += 100000) {
                const char *line = "{\"sensor\":\"MY-RG-0002\",\"ts\":%lld,\"values\":{\"rain_mm\":20}}\n";
                fprintf(f, line, (long long) (t0 + ms));
                fprintf(g, line, (long long) (t0 + ms));
        }
        fclose(f);
        fclose(g);

        const char *argv_flood[] = { it.bin, "replay", "--rules", path("rules"), "--stations", path("stations/miyun.csv"),
                                     flood, NULL };
        const char *argv_calm[] = { it.bin, "replay", "--rules", path("rules"), "--stations", path("stations/miyun.csv"),
                                    calm, NULL };
        result a = run(NULL, argv_flood);
        result b = run(NULL, argv_calm);

        assert_int_equal(a.code, 0);
        assert_int_equal(b.code, 0);
        /* 6000 flood readings: 60 in each of the 10 minutes count. */
        assert_non_null(strstr(a.err, "rejected (rate_limited 5400)"));
        assert_non_null(strstr(a.err, "rejected (rate_limited): sensor \"MY-RG-0001\" sent more than 60 readings within 60 s"));
        assert_null(strstr(b.err, "rate_limited"));
        /* The storm raised, and the flood changed none of its alerts. */
        assert_non_null(strstr(b.out, "\"sensor\":\"MY-RG-0002\""));
        assert_null(strstr(a.out, "\"sensor\":\"MY-RG-0001\""));
        assert_string_equal(a.out, b.out);
        result_free(&a);
        result_free(&b);
}

static void replay_is_deterministic_and_survives_garbage(void **state) {
        char cmd[2048];
        result a, b;

        snprintf(cmd, sizeof(cmd),
                 "%s simulate --stations %s --seed 11 --duration 1d --bad 0.05 > %s/sim.jsonl && "
                 "head -c 200000 /dev/urandom >> %s/sim.jsonl && "
                 "%s replay --rules %s --stations %s %s/sim.jsonl",
                 it.bin, path("stations/miyun.csv"), it.tmpdir, it.tmpdir, it.bin, path("rules"), path("stations/miyun.csv"), it.tmpdir);
        a = sh(cmd);
        snprintf(cmd, sizeof(cmd), "%s replay --rules %s --stations %s - < %s/sim.jsonl",
                 it.bin, path("rules"), path("stations/miyun.csv"), it.tmpdir);
        b = sh(cmd);
        assert_int_equal(a.code, 0);
        assert_int_equal(b.code, 0);
        assert_true(a.out_len > 0);
        assert_int_equal(a.out_len, b.out_len);
        assert_memory_equal(a.out, b.out, a.out_len);
        assert_non_null(strstr(a.err, "rejected (malformed_json)"));
        result_free(&a);
        result_free(&b);
}

/* An independent model of one rule, written the slow obvious way, checked
 * against the engine on a simulated storm for every rain gauge. */
typedef struct obs {
        int64_t ts;
        double v;
} obs;

static int64_t parse_ts_ms(const char *p) {
        struct tm tm = { 0 };
        int off_h, off_m;
        char sign;

        sscanf(p, "%d-%d-%dT%d:%d:%d%c%d:%d", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour, &tm.tm_min,
               &tm.tm_sec, &sign, &off_h, &off_m);
        tm.tm_year -= 1900;
        tm.tm_mon -= 1;
        int64_t t = (int64_t) timegm(&tm) * 1000;
        int off = (off_h * 60 + off_m) * 60000;
        return sign == '+' ? t - off : t + off;
}

static double window_sum(const obs *o, size_t n, int64_t t, int64_t d) {
        double s = 0;
        for (size_t i = 0; i < n; i++)
                if (o[i].ts > t - d && o[i].ts <= t)
                        s += o[i].v;
        return s;
}

static void engine_agrees_with_a_naive_model_of_the_rainstorm_rule(void **state) {
        char cmd[2048], sim[512];
        result r;

        snprintf(sim, sizeof(sim), "%s/storm.jsonl", it.tmpdir);
        snprintf(cmd, sizeof(cmd), "%s simulate --stations %s --seed 3 --duration 2d --step 10m > %s",
                 it.bin, path("stations/miyun.csv"), sim);
        r = sh(cmd);
        assert_int_equal(r.code, 0);
        result_free(&r);
        const char *argv[] = { it.bin, "replay", "--rules", path("tests/data/rules-small"),
                               "--stations", path("stations/miyun.csv"), sim, NULL };
        r = run(NULL, argv);
        assert_int_equal(r.code, 0);

        size_t len;
        char *text = it_read_file(sim, &len);
        int checked = 0, events = 0;
        for (int g = 1; g <= 60; g++) {
                char id[32], key[64];
                obs *o = calloc(400000, sizeof(*o));
                size_t n = 0;

                snprintf(id, sizeof(id), "MY-RG-%04d", g);
                snprintf(key, sizeof(key), "\"sensor\":\"%s\"", id);
                for (char *p = strstr(text, key); p; p = strstr(p + 1, key)) {
                        char *ts = strstr(p, "\"ts\":\"");
                        char *v = strstr(p, "\"rain_mm\":");
                        o[n].ts = parse_ts_ms(ts + 6);
                        o[n].v = strtod(v + 10, NULL);
                        n++;
                }
                if (n == 0) {
                        free(o);
                        continue;
                }
                checked++;

                /* The model: SPEC §3.2 with for 0s and clear_after 1h. */
                char want[8192] = "", got[8192] = "", line[256];
                int level = 0;
                int64_t wait = -1;
                const char *names[] = { "none", "blue", "yellow", "orange", "red" };
                for (size_t i = 0; i < n; i++) {
                        int64_t t = o[i].ts;
                        double s3 = window_sum(o, i + 1, t, 3 * 3600000LL);
                        double s6 = window_sum(o, i + 1, t, 6 * 3600000LL);
                        double s12 = window_sum(o, i + 1, t, 12 * 3600000LL);
                        /* sums of one-decimal values: compare in tenths to stay exact */
                        int raw = llround(s3 * 10) >= 1000 ? 4 : llround(s3 * 10) >= 500 ? 3
                                : llround(s6 * 10) >= 500 ? 2 : llround(s12 * 10) >= 500 ? 1 : 0;
                        int to = -1;
                        if (raw > level) {
                                to = raw;
                                wait = -1;
                        } else if (raw < level) {
                                if (wait < 0)
                                        wait = t;
                                if (t - wait >= 3600000) {
                                        to = raw;
                                        wait = -1;
                                }
                        } else
                                wait = -1;
                        if (to >= 0) {
                                snprintf(line, sizeof(line), "%s@%lld ", names[to], (long long) t);
                                strncat(want, line, sizeof(want) - strlen(want) - 1);
                                level = to;
                        }
                }
                for (char *p = strstr(r.out, key); p; p = strstr(p + 1, key)) {
                        char *bol = p;
                        while (bol > r.out && bol[-1] != '\n')
                                bol--;
                        if (!strstr(bol, "\"rule\":\"rainstorm\"") || strstr(bol, "\"rule\":\"rainstorm\"") > strchr(bol, '\n'))
                                continue;
                        char *lv = strstr(bol, "\"level\":\"") + 9;
                        char *ts = strstr(bol, "\"ts\":\"") + 6;
                        int k = 0;
                        while (strncmp(lv, names[k], strlen(names[k])) || lv[strlen(names[k])] != '"')
                                k++;
                        snprintf(line, sizeof(line), "%s@%lld ", names[k], (long long) parse_ts_ms(ts));
                        strncat(got, line, sizeof(got) - strlen(got) - 1);
                        events++;
                }
                assert_string_equal(got, want);
                free(o);
        }
        assert_true(checked >= 30);
        assert_true(events >= 20);   /* the storm really stormed */
        free(text);
        result_free(&r);
}

static void check_shows_which_stations_each_rule_applies_to(void **state) {
        const char *argv[] = { it.bin, "check", "--rules", path("rules"), "--stations", path("stations/miyun.csv"), NULL };
        result r = run(NULL, argv);

        assert_int_equal(r.code, 0);
        assert_non_null(strstr(r.out, "rainstorm"));
        assert_non_null(strstr(r.out, "MY-RG-0001"));
        assert_non_null(strstr(r.out, "ok: "));
        result_free(&r);
}

static void check_reports_every_error_with_file_line_and_column(void **state) {
        char dir[512], file[600];
        FILE *f;

        snprintf(dir, sizeof(dir), "%s/broken", it.tmpdir);
        mkdir(dir, 0755);
        snprintf(file, sizeof(file), "%s/a.yaml", dir);
        f = fopen(file, "we");
        fputs("rules:\n"
              "  - id: one\n"
              "    kind: rain\n"
              "    levels:\n"
              "      red: summ(rain_mm, 3h) >= 100\n"
              "  - id: two\n"
              "    kind: rain\n"
              "    lvels:\n"
              "      red: x > 1\n", f);
        fclose(f);
        const char *argv[] = { it.bin, "check", "--rules", dir, "--stations", path("stations/miyun.csv"), NULL };
        result r = run(NULL, argv);

        assert_int_equal(r.code, 1);
        char want1[700], want2[700];
        snprintf(want1, sizeof(want1), "%s:5:12: ", file);
        snprintf(want2, sizeof(want2), "%s:8:5: ", file);
        assert_non_null(strstr(r.err, want1));
        assert_non_null(strstr(r.err, "summ"));
        assert_non_null(strstr(r.err, "did you mean 'sum'"));
        assert_non_null(strstr(r.err, want2));
        assert_non_null(strstr(r.err, "lvels"));
        result_free(&r);
}

/* Issue 8: three rules with 300 distinct windows on rain_mm overflowed an
 * 8-bit window count in the engine, so `check` (the unit's ExecStartPre)
 * crashed. A rule set like this is legitimate and must check clean. */
static void check_accepts_three_hundred_windows_on_one_field(void **state) {
        static const char *const lv[] = { "red", "orange", "yellow", "blue" };
        char dir[512], file[600];
        FILE *f;

        snprintf(dir, sizeof(dir), "%s/wide", it.tmpdir);
        mkdir(dir, 0755);
        snprintf(file, sizeof(file), "%s/a.yaml", dir);
        f = fopen(file, "we");
        fputs("rules:\n", f);
        for (int k = 0; k < 3; k++) {
                fprintf(f, "  - id: wide%d\n    kind: rain\n    levels:\n", k);
                for (int l = 0; l < 4; l++) {
                        fprintf(f, "      %s: >-\n        rain_mm < 0", lv[l]);
                        for (int m = 1 + 100 * k + l; m <= 100 + 100 * k; m += 4)
                                fprintf(f, " or sum(rain_mm, %dm) >= %d", m, 1000 + m);
                        fputs("\n", f);
                }
        }
        fclose(f);
        const char *argv[] = { it.bin, "check", "--rules", dir, "--stations", path("stations/miyun.csv"), NULL };
        result r = run(NULL, argv);

        assert_int_equal(r.code, 0);
        assert_non_null(strstr(r.out, "wide2"));
        assert_non_null(strstr(r.out, "ok: "));
        result_free(&r);
}

/* `check` of a copy of the default rules in tmpdir/name, changed by the
 * shell command edit (run in that directory). */
static result check_changed_default_rules(const char *name, const char *edit) {
        char cmd[2048];

        snprintf(cmd, sizeof(cmd), "rm -rf %s/%s && mkdir %s/%s && cp %s/*.yaml %s/%s/ && (cd %s/%s && %s) && "
                 "%s check --rules %s/%s --stations %s",
                 it.tmpdir, name, it.tmpdir, name, path("rules"), it.tmpdir, name, it.tmpdir, name, edit,
                 it.bin, it.tmpdir, name, path("stations/miyun.csv"));
        return sh(cmd);
}

static void check_rejects_a_misspelt_field_with_its_place_and_a_suggestion(void **state) {
        char want[700];
        /* Issue 8: `sum(rain_mn, 3h) >= 100` passed check and red never fired. */
        result r = check_changed_default_rules("typo", "sed -i 's/red:    sum(rain_mm, 3h)/red:    sum(rain_mn, 3h)/' rain.yaml");

        assert_int_equal(r.code, 1);
        snprintf(want, sizeof(want), "%s/typo/rain.yaml:21:19: unknown field 'rain_mn' for kind rain "
                 "(did you mean 'rain_mm'?)\n", it.tmpdir);
        assert_non_null(strstr(r.err, want));
        assert_non_null(strstr(r.err, "check failed: 1 error, 0 warnings"));
        result_free(&r);

        /* The daemon's start (and ExecStartPre) loads rules the same way. */
        char cmd[2048];
        snprintf(cmd, sizeof(cmd), "sed 's|/etc/fenghuo/rules|%s/typo|; s|/etc/fenghuo/stations.csv|%s|' %s > %s/typo.yaml && "
                 "%s run --config %s/typo.yaml --check",
                 it.tmpdir, path("stations/miyun.csv"), path("etc/fenghuo.yaml"), it.tmpdir, it.bin, it.tmpdir);
        r = sh(cmd);
        if (!(r.code == 2 && strstr(r.err, "no daemon"))) {
                assert_int_equal(r.code, 1);
                assert_non_null(strstr(r.err, want));
        }
        result_free(&r);
}

static void default_rules_declare_their_fields_and_check_clean(void **state) {
        char data[512];
        const char *argv[] = { it.bin, "check", "--rules", path("rules"), "--stations", path("stations/miyun.csv"), NULL };
        result r = run(NULL, argv);

        assert_int_equal(r.code, 0);
        assert_non_null(strstr(r.out, "ok: 11 rules, 66 stations, 0 warnings"));
        result_free(&r);

        /* The four years of Beijing rain: only rain gauges, so rules of
         * other kinds apply to no station (warned), but no field is unknown. */
        snprintf(data, sizeof(data), "%s/../shared/data/beijing-rain/stations.csv", it.src);
        if (access(data, R_OK) != 0)
                return;
        const char *argv2[] = { it.bin, "check", "--rules", path("rules"), "--stations", data, NULL };
        r = run(NULL, argv2);
        assert_int_equal(r.code, 0);
        assert_null(strstr(r.err, "field"));
        result_free(&r);
}

static void rules_without_field_declarations_load_with_a_warning(void **state) {
        char want[700];
        /* A rules directory from before rules/fields.yaml keeps working. */
        result r = check_changed_default_rules("old", "rm fields.yaml");

        assert_int_equal(r.code, 0);
        snprintf(want, sizeof(want), "%s/old: warning: field names in rules of kind rain, water_level, landslide, bridge "
                 "are not checked: no 'fields:' declares that kind's fields", it.tmpdir);
        assert_non_null(strstr(r.err, want));
        assert_non_null(strstr(r.out, "ok: 11 rules, 66 stations, 1 warning"));
        result_free(&r);
}

static void bad_usage_exits_2_and_invalid_stations_exit_1(void **state) {
        const char *a1[] = { it.bin, "replay", "--rules", path("rules"), NULL };
        const char *a2[] = { it.bin, "replay", "--rules", path("rules"), "--stations", "/nonexistent.csv", NULL };
        const char *a3[] = { it.bin, "frobnicate", NULL };
        const char *a4[] = { it.bin, "replay", "--rules", path("rules"), "--stations", path("stations/miyun.csv"),
                             "/nonexistent.jsonl", NULL };
        result r;

        r = run(NULL, a1);
        assert_int_equal(r.code, 2);
        result_free(&r);
        r = run(NULL, a2);
        assert_int_equal(r.code, 1);
        assert_non_null(strstr(r.err, "/nonexistent.csv"));
        result_free(&r);
        r = run(NULL, a3);
        assert_int_equal(r.code, 2);
        result_free(&r);
        r = run(NULL, a4);
        assert_int_equal(r.code, 2);
        result_free(&r);
}

static void four_years_of_beijing_rain_reach_orange_but_never_red(void **state) {
        char data[512], cmd[2048];

        snprintf(data, sizeof(data), "%s/../shared/data/beijing-rain", it.src);
        if (access(data, R_OK) != 0) {
                skip();
                return;
        }
        snprintf(cmd, sizeof(cmd), "zcat %s/readings.jsonl.gz | %s replay --rules %s --stations %s/stations.csv -",
                 data, it.bin, path("rules"), data);
        result r = sh(cmd);
        assert_int_equal(r.code, 0);
        assert_non_null(strstr(r.err, "140110 accepted"));
        assert_null(strstr(r.out, "\"level\":\"red\""));
        /* the storm of 20 July 2016 */
        assert_non_null(strstr(r.out, "\"level\":\"orange\",\"previous\":\"yellow\",\"severity\":2,\"ts\":\"2016-07-20"));
        result_free(&r);
}

static void replay_leaks_nothing_under_valgrind(void **state) {
        char cmd[2048];

        /* valgrind cannot run a binary built with AddressSanitizer; the
         * sanitizer run of the suite sets this. */
        if (getenv("FENGHUO_NO_VALGRIND") || system("command -v valgrind >/dev/null 2>&1") != 0) {
                skip();
                return;
        }
        snprintf(cmd, sizeof(cmd),
                 "%s simulate --stations %s --seed 5 --duration 6h --bad 0.05 > %s/vg.jsonl && "
                 "valgrind -q --soname-synonyms=somalloc=*jemalloc* --leak-check=full --show-leak-kinds=all "
                 "--errors-for-leak-kinds=all --error-exitcode=99 "
                 "%s replay --rules %s --stations %s %s/vg.jsonl > /dev/null",
                 it.bin, path("stations/miyun.csv"), it.tmpdir, it.bin, path("rules"), path("stations/miyun.csv"), it.tmpdir);
        result r = sh(cmd);
        if (r.code != 0)
                fprintf(stderr, "%s\n", r.err);
        assert_int_equal(r.code, 0);
        assert_null(strstr(r.err, "definitely lost"));
        result_free(&r);
}

static void systemd_unit_passes_systemd_analyze_verify(void **state) {
        char cmd[2048];

        if (system("command -v systemd-analyze >/dev/null 2>&1") != 0) {
                skip();
                return;
        }
        /* verify wants the binary it names to exist: point it at ours. */
        for (int i = 0; i < 2; i++) {
                const char *unit = i == 0 ? "fenghuo.service" : "fenghuo-console.service";
                char src[64];
                snprintf(src, sizeof(src), "systemd/%s", unit);
                snprintf(cmd, sizeof(cmd), "mkdir -p %s/unit && sed 's|/usr/bin/fenghuo|%s|g' %s > %s/unit/%s && "
                         "systemd-analyze verify %s/unit/%s",
                         it.tmpdir, it.bin, path(src), it.tmpdir, unit, it.tmpdir, unit);
                result r = sh(cmd);
                if (r.code != 0)
                        fprintf(stderr, "%s\n", r.err);
                assert_int_equal(r.code, 0);
                assert_string_equal(r.err, "");
                result_free(&r);
        }
}

static void example_config_is_valid_and_a_bad_one_is_refused_with_positions(void **state) {
        char cmd[2048], bad[600];
        FILE *f;

        snprintf(cmd, sizeof(cmd), "sed 's|/etc/fenghuo/rules|%s|; s|/etc/fenghuo/stations.csv|%s|' %s > %s/ok.yaml && "
                 "%s run --config %s/ok.yaml --check",
                 path("rules"), path("stations/miyun.csv"), path("etc/fenghuo.yaml"), it.tmpdir, it.bin, it.tmpdir);
        result r = sh(cmd);
        if (r.code == 2 && strstr(r.err, "no daemon")) {
                result_free(&r);
                skip();
                return;
        }
        assert_int_equal(r.code, 0);
        assert_non_null(strstr(r.out, "ok: 11 rules, 66 stations"));
        result_free(&r);

        snprintf(bad, sizeof(bad), "%s/bad.yaml", it.tmpdir);
        f = fopen(bad, "we");
        fprintf(f, "rules: %s\nstaions: x\nkafka:\n  brokers: b\n  topics: {rain: x, snow: y}\ntick: soon\n", path("rules"));
        fclose(f);
        const char *argv[] = { it.bin, "run", "--config", bad, "--check", NULL };
        r = run(NULL, argv);
        assert_int_equal(r.code, 1);
        snprintf(cmd, sizeof(cmd), "%s:2:1: unknown key 'staions'", bad);
        assert_non_null(strstr(r.err, cmd));
        snprintf(cmd, sizeof(cmd), "%s:5:21: unknown station kind 'snow'", bad);
        assert_non_null(strstr(r.err, cmd));
        snprintf(cmd, sizeof(cmd), "%s:6:7: 'tick' must be a duration", bad);
        assert_non_null(strstr(r.err, cmd));
        result_free(&r);
}

static int setup(void **state) {
        return it_init("fenghuo-cli");
}

static int teardown(void **state) {
        return it_remove_tmpdir();
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(hand_worked_storm_gives_exactly_the_timeline_worked_out_by_hand),
                cmocka_unit_test(every_bad_reading_is_reported_with_its_line_and_reason),
                cmocka_unit_test(flooding_gauge_is_rate_limited_and_other_gauges_alert_as_before),
                cmocka_unit_test(replay_is_deterministic_and_survives_garbage),
                cmocka_unit_test(engine_agrees_with_a_naive_model_of_the_rainstorm_rule),
                cmocka_unit_test(check_shows_which_stations_each_rule_applies_to),
                cmocka_unit_test(check_reports_every_error_with_file_line_and_column),
                cmocka_unit_test(check_rejects_a_misspelt_field_with_its_place_and_a_suggestion),
                cmocka_unit_test(default_rules_declare_their_fields_and_check_clean),
                cmocka_unit_test(rules_without_field_declarations_load_with_a_warning),
                cmocka_unit_test(check_accepts_three_hundred_windows_on_one_field),
                cmocka_unit_test(bad_usage_exits_2_and_invalid_stations_exit_1),
                cmocka_unit_test(four_years_of_beijing_rain_reach_orange_but_never_red),
                cmocka_unit_test(replay_leaks_nothing_under_valgrind),
                cmocka_unit_test(systemd_unit_passes_systemd_analyze_verify),
                cmocka_unit_test(example_config_is_valid_and_a_bad_one_is_refused_with_positions),
        };
        return cmocka_run_group_tests(tests, setup, teardown);
}
