/* `fenghuo demo` end to end: the real daemon on the embedded Kafka must
 * raise exactly the alerts `simulate | replay` raises, on every run and on
 * a busy machine (issue 8: one run of three printed false bridge-silence
 * alerts, cleared before they were raised, and a summary of 161 against
 * replay's 153). */
#include <locale.h>
#include <math.h>
#include <regex.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <wchar.h>
#include <cmocka.h>

#include "it_harness.h"

/* stdout of a shell command, which must exit 0. */
static char *sh_out(const char *cmd, const char *tag) {
        char out[512], err[512];
        const char *argv[] = { "/bin/sh", "-c", cmd, NULL };

        snprintf(out, sizeof(out), "%s/%s.out", it.tmpdir, tag);
        snprintf(err, sizeof(err), "%s/%s.err", it.tmpdir, tag);
        int code = it_run(argv, NULL, out, err);
        if (code != 0) {
                char *e = it_read_file(err, NULL);
                fprintf(stderr, "%s: exit %d\n%s\n", cmd, code, e);
                free(e);
                fail();
        }
        return it_read_file(out, NULL);
}

/* Processes that keep both cores busy while the demo runs. */
static void hogs_start(pid_t *pids, int n) {
        for (int i = 0; i < n; i++) {
                pids[i] = fork();
                assert_true(pids[i] >= 0);
                if (pids[i] == 0)
                        for (volatile unsigned long x = 0;; x++)
                                ;
        }
}

static void hogs_stop(pid_t *pids, int n) {
        for (int i = 0; i < n; i++) {
                kill(pids[i], SIGKILL);
                waitpid(pids[i], NULL, 0);
        }
}

static void demo_raises_exactly_the_alerts_of_replay_on_every_run(void **state) {
        char cmd[4096];
        pid_t hogs[2];

        /* What the demo's summary tells the user to run. */
        snprintf(cmd, sizeof(cmd),
                 "cd '%s' && '%s' simulate --stations stations/miyun.csv --bad 0.003 --seed 7 | "
                 "'%s' replay --rules rules --stations stations/miyun.csv 2>/dev/null | sort",
                 it.src, it.bin, it.bin);
        char *want = sh_out(cmd, "replay");
        size_t n_want = it_count_substr(want, "\n");
        assert_true(n_want > 100);   /* the storm raises alerts at all */

        hogs_start(hogs, 2);
        for (int run = 0; run < 3; run++) {
                char tag[16], err[512], summary[64];
                /* The shortest demo: the most readings per second. */
                snprintf(cmd, sizeof(cmd), "cd '%s' && '%s' demo --seconds 1 --json 2>'%s/demo%d.log' | sort",
                         it.src, it.bin, it.tmpdir, run);
                snprintf(tag, sizeof(tag), "demo%d", run);
                char *got = sh_out(cmd, tag);
                if (strcmp(got, want) != 0)
                        fprintf(stderr, "run %d: %zu alerts, replay %zu\n", run, it_count_substr(got, "\n"), n_want);
                assert_string_equal(got, want);
                /* The summary counts the same alerts. */
                snprintf(err, sizeof(err), "%s/demo%d.log", it.tmpdir, run);
                snprintf(summary, sizeof(summary), "\n预警事件 %zu 条：", n_want);
                assert_int_equal(it_file_count(err, summary), 1);
                free(got);
        }
        hogs_stop(hogs, 2);
        free(want);
}


/* ---- the demo as an operator reads it ---- */

/* Terminal columns of a UTF-8 line, as glibc's wcwidth() counts them. */
static int display_cols(const char *line, size_t n) {
        wchar_t w[512];
        char tmp[2048];

        assert_true(n < sizeof(tmp));
        memcpy(tmp, line, n);
        tmp[n] = 0;
        size_t k = mbstowcs(w, tmp, 512);
        assert_true(k != (size_t) -1 && k < 512);
        int cols = wcswidth(w, k);
        assert_true(cols >= 0);   /* no control characters: no colour to a file */
        return cols;
}

/* What the rules in rules/ promise for each rule and tier (蓝色IV … 红色I): the
 * unit of its value (rules/fields.yaml) and the threshold a line shows, as
 * a regular expression; NULL where the tier's condition is not one
 * comparison (洪水预警's red and blue). */
static const struct expect {
        const char *title, *unit;
        const char *th[5];
} expects[] = {
        { "暴雨预警", "mm", { NULL, "≥50 mm\\(12h\\)", "≥50 mm\\(6h\\)", "≥50 mm", "≥100 mm" } },
        { "洪水预警", "m", { NULL, NULL, "≥[0-9.]+ m", "≥[0-9.]+ m", NULL } },
        { "滑坡切线角预警", NULL, { NULL, ">45", "≥80", "≥85", "≥89" } },
        { "滑坡位移速率预警", "mm/d", { NULL, NULL, "≥5 mm/d", "≥10 mm/d", "≥20 mm/d" } },
        { "桥梁挠度超限预警", "mm", { NULL, "≥[0-9.]+ mm", "≥[0-9.]+ mm", "≥[0-9.]+ mm", "≥[0-9.]+ mm" } },
        { "桥梁应变超限预警", "µε", { NULL, "≥[0-9.]+ µε", "≥[0-9.]+ µε", "≥[0-9.]+ µε", "≥[0-9.]+ µε" } },
        { "桥梁振动超限预警", "mm/s", { NULL, "≥[0-9.]+ mm/s", "≥[0-9.]+ mm/s", "≥[0-9.]+ mm/s", "≥[0-9.]+ mm/s" } },
        { "雨量站数据中断", NULL, { NULL, ">90 min", ">3 h", ">6 h", NULL } },
        { "水位站数据中断", NULL, { NULL, ">90 min", ">3 h", ">6 h", NULL } },
        { "地灾监测点数据中断", NULL, { NULL, ">90 min", ">3 h", ">6 h", NULL } },
        { "桥梁监测数据中断", NULL, { NULL, ">90 min", ">3 h", ">6 h", NULL } },
};
static const char *const tiers[5] = { NULL, "蓝色IV", "黄色III", "橙色II", "红色I" };
static const char *const level_names[5] = { "none", "blue", "yellow", "orange", "red" };

static bool matches(const char *line, const char *pattern) {
        regex_t re;

        assert_int_equal(regcomp(&re, pattern, REG_EXTENDED | REG_NOSUB), 0);
        bool ok = regexec(&re, line, 0, NULL, 0) == 0;
        regfree(&re);
        return ok;
}

static int cmp_str(const void *a, const void *b) {
        return strcmp(*(char *const *) a, *(char *const *) b);
}

/* "tier sensor title raised-at|value" of the alerts replay leaves open, one
 * a line, sorted; from its JSON Lines in the order replay wrote them. */
static char *open_per_replay(const char *jsonl, size_t *ret_n) {
        enum { MAX = 4096 };
        struct pair { char sensor[32], rule[64], title[128], raised[16]; int tier; double value; bool on; } *o;
        char **lines = calloc(MAX, sizeof(*lines)), *out = calloc(MAX, 200);
        size_t n = 0, k = 0;

        o = calloc(MAX, sizeof(*o));
        assert_true(o && lines && out);
        for (const char *p = jsonl; *p;) {
                const char *nl = strchr(p, '\n');
                size_t len = nl ? (size_t) (nl - p) : strlen(p), i;
                char line[4096], sensor[32], rule[64], event[16], level[16], ts[40];
                assert_true(len < sizeof(line));
                memcpy(line, p, len);
                line[len] = 0;
                p += len + (nl != NULL);
                it_json_str(line, "sensor", sensor, sizeof(sensor));
                it_json_str(line, "rule", rule, sizeof(rule));
                it_json_str(line, "event", event, sizeof(event));
                it_json_str(line, "level", level, sizeof(level));
                it_json_str(line, "ts", ts, sizeof(ts));
                for (i = 0; i < n && (strcmp(o[i].sensor, sensor) || strcmp(o[i].rule, rule)); i++)
                        ;
                if (i == n) {
                        assert_true(n < MAX);
                        snprintf(o[i].sensor, sizeof(o[i].sensor), "%s", sensor);
                        snprintf(o[i].rule, sizeof(o[i].rule), "%s", rule);
                        n++;
                }
                it_json_str(line, "title", o[i].title, sizeof(o[i].title));
                if (strcmp(event, "raised") == 0)   /* "2023-07-29T15:20:00+08:00" -> "07-29 15:20" */
                        snprintf(o[i].raised, sizeof(o[i].raised), "%.5s %.5s", ts + 5, ts + 11);
                o[i].tier = 0;
                for (int t = 1; t < 5; t++)
                        if (strcmp(level, level_names[t]) == 0)
                                o[i].tier = t;
                const char *v = strstr(line, "\"value\":");
                o[i].value = v ? strtod(v + 8, NULL) : NAN;
                o[i].on = strcmp(event, "cleared") != 0;
        }
        for (size_t i = 0; i < n; i++)
                if (o[i].on) {
                        assert_true(o[i].tier > 0);
                        char *l = malloc(300);
                        snprintf(l, 300, "%s %s %s %s|%.1f", tiers[o[i].tier], o[i].sensor, o[i].title, o[i].raised,
                                 o[i].value);
                        lines[k++] = l;
                }
        qsort(lines, k, sizeof(*lines), cmp_str);
        for (size_t i = 0; i < k; i++) {
                strcat(out, lines[i]);
                strcat(out, "\n");
                free(lines[i]);
        }
        free(lines);
        free(o);
        *ret_n = k;
        return out;
}

static void demo_reads_for_an_operator(void **state) {
        char cmd[4096], stations[512];
        static const char long_name[] = "河南寨镇河南寨水文气象综合观测站东侧山坡上新装的自动雨量计";

        assert_non_null(setlocale(LC_CTYPE, "C.UTF-8"));
        /* The registry with one station's name too long for any line: the
         * demo must cut it with "…", never wrap it. */
        snprintf(stations, sizeof(stations), "%s/miyun.csv", it.tmpdir);
        snprintf(cmd, sizeof(cmd), "sed 's/^MY-RG-0036,rain,河南寨镇河南寨,/MY-RG-0036,rain,%s,/' '%s/stations/miyun.csv' > '%s'",
                 long_name, it.src, stations);
        free(sh_out(cmd, "sed"));
        snprintf(cmd, sizeof(cmd),
                 "cd '%s' && '%s' simulate --stations '%s' --bad 0.003 --seed 7 | "
                 "'%s' replay --rules rules --stations '%s' 2>/dev/null",
                 it.src, it.bin, stations, it.bin, stations);
        char *replay = sh_out(cmd, "replay-long");
        assert_true(strstr(replay, long_name) != NULL);
        /* stdout is a file: no colour, as in a pipe. */
        snprintf(cmd, sizeof(cmd), "cd '%s' && '%s' demo --seconds 1 --stations '%s' 2>&1", it.src, it.bin, stations);
        char *out = sh_out(cmd, "human");

        size_t n_alerts = 0, n_long = 0, n_active = 0, want_active;
        char *want = open_per_replay(replay, &want_active);
        char *got = calloc(1, strlen(out) + 1);
        int in_active = 0;   /* 1: the heads of the list next, 2: its lines */
        assert_non_null(got);
        for (char *p = out; *p;) {
                char *nl = strchr(p, '\n');
                size_t len = nl ? (size_t) (nl - p) : strlen(p);
                char line[2048];
                assert_true(len < sizeof(line));
                memcpy(line, p, len);
                line[len] = 0;
                p += len + (nl != NULL);

                if (display_cols(line, len) > 80)
                        fail_msg("wider than 80 columns (%d): %s", display_cols(line, len), line);
                /* An alert line: "07-29 06:50 [黄色III] 发布   48.0 mm   ≥50 mm(6h)  暴雨预警 河南寨镇河南寨" */
                if (matches(line, "^[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2} \\[")) {
                        const struct expect *x = NULL;
                        int tier = 0;
                        for (size_t i = 0; i < sizeof(expects) / sizeof(expects[0]); i++) {
                                char t[160];
                                snprintf(t, sizeof(t), " %s ", expects[i].title);
                                if (strstr(line, t))
                                        x = &expects[i];
                        }
                        for (int t = 1; t < 5; t++) {
                                char b[32];
                                snprintf(b, sizeof(b), "[%s]", tiers[t]);
                                if (strstr(line, b))
                                        tier = t;
                        }
                        if (!x || !tier)
                                fail_msg("an alert line without a known rule title or tier: %s", line);
                        char pattern[512];
                        snprintf(pattern, sizeof(pattern), "^.{11} \\[%s\\] +(发布|升级|降级|解除) +-?[0-9]+\\.[0-9]%s%s%s%s +%s ",
                                 tiers[tier], x->unit ? " " : "", x->unit ? x->unit : "", x->th[tier] ? " +" : "",
                                 x->th[tier] ? x->th[tier] : "", x->title);
                        if (!matches(line, pattern))
                                fail_msg("not value, unit, threshold, title (%s): %s", pattern, line);
                        n_alerts++;
                        if (strstr(line, "河南寨镇河南寨水文")) {
                                n_long++;
                                assert_true(matches(line, "…$"));
                        }
                        continue;
                }
                if (strstr(line, "── 结束时仍生效的预警：")) {
                        char count[64];
                        snprintf(count, sizeof(count), "预警：%zu 条 ──", want_active);
                        assert_non_null(strstr(line, count));
                        in_active = 1;
                        continue;
                }
                if (in_active == 1) {
                        assert_non_null(strstr(line, "站点编号"));
                        in_active = 2;
                        continue;
                }
                if (in_active == 2) {
                        if (len == 0) {
                                in_active = 0;
                                continue;
                        }
                        /* "[红色I]   MY-LS-0007 07-29 15:20   89.1      滑坡切线角预警 太师屯镇车道峪" */
                        char tier[32], sensor[32], day[8], hm[8], value[32], unit[160];
                        if (sscanf(line, "[%31[^]]] %31s %7s %7s %31s %159s", tier, sensor, day, hm, value, unit) != 6)
                                fail_msg("not an active alert: %s", line);
                        const struct expect *x = NULL;
                        for (size_t i = 0; i < sizeof(expects) / sizeof(expects[0]); i++)
                                if (strstr(line, expects[i].title))
                                        x = &expects[i];
                        assert_non_null(x);
                        if (x->unit)
                                assert_string_equal(unit, x->unit);
                        char *end = got + strlen(got);
                        sprintf(end, "%s %s %s %s %s|%s\n", tier, sensor, x->title, day, hm, value);
                        n_active++;
                }
        }
        /* Ends with what is still open, as replay leaves it. */
        assert_int_equal(in_active, 0);
        {
                char *lines[4096];
                size_t k = 0;
                for (char *q = strtok(got, "\n"); q; q = strtok(NULL, "\n"))
                        lines[k++] = q;
                qsort(lines, k, sizeof(*lines), cmp_str);
                char *sorted = calloc(1, strlen(out) + 1);
                for (size_t i = 0; i < k; i++) {
                        strcat(sorted, lines[i]);
                        strcat(sorted, "\n");
                }
                assert_string_equal(sorted, want);
                free(sorted);
        }
        assert_true(want_active > 0);
        assert_int_equal(n_active, want_active);
        assert_int_equal(n_alerts, it_count_substr(replay, "\n"));
        assert_true(n_long > 0);
        /* Counts read "1 条" and "11 条" alike; no English plural slips in. */
        assert_non_null(strstr(out, "生效预警 1 条"));
        assert_true(matches(out, "生效预警 [0-9]{2,} 条"));
        assert_false(matches(out, "[0-9] alerts? "));
        free(got);
        free(want);
        free(out);
        free(replay);
}

static int setup(void **state) {
        return it_init("fenghuo-demo");
}

static int teardown(void **state) {
        return it_remove_tmpdir();
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(demo_raises_exactly_the_alerts_of_replay_on_every_run),
                cmocka_unit_test(demo_reads_for_an_operator),
        };
        return cmocka_run_group_tests(tests, setup, teardown);
}
