/* End to end: the rule engineering commands (`test`, `diff`, `plot`) of
 * issue 11, run as an engineer runs them, and every example of their
 * sections in docs/rules.md run as written.
 * FENGHUO (the binary) and SRCDIR (the source tree) come from meson. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>
#ifdef HAVE_LIBXML2
#include <libxml/parser.h>
#include <libxml/xpath.h>
#include <libxml/xpathInternals.h>
#endif

#include "it_harness.h"

typedef struct result {
        int code;
        char *out;
        char *err;
} result;

/* sh -c cmd in the source tree with the binary first on PATH, as the docs
 * say to run the examples. */
static result sh(const char *cmd) {
        char out_path[512], err_path[512], *full;
        const char *slash = strrchr(it.bin, '/');
        int bin_dir_len = slash ? (int) (slash - it.bin) : 1;
        result r = { 0 };

        snprintf(out_path, sizeof(out_path), "%s/out", it.tmpdir);
        snprintf(err_path, sizeof(err_path), "%s/err", it.tmpdir);
        assert_true(asprintf(&full, "cd '%s' && PATH='%.*s':\"$PATH\" && export PATH && %s", it.src, bin_dir_len,
                             slash ? it.bin : ".", cmd) > 0);
        const char *argv[] = { "/bin/sh", "-c", full, NULL };
        r.code = it_run(argv, NULL, out_path, err_path);
        r.out = it_read_file(out_path, NULL);
        r.err = it_read_file(err_path, NULL);
        free(full);
        return r;
}

static void result_free(result *r) {
        free(r->out);
        free(r->err);
}

static char *tmp(const char *name) {
        static char buf[8][512];
        static int k;
        k = (k + 1) % 8;
        snprintf(buf[k], sizeof(buf[k]), "%s/%s", it.tmpdir, name);
        return buf[k];
}

static void expect_contains(const char *hay, const char *needle) {
        if (!strstr(hay, needle)) {
                fprintf(stderr, "expected to find:\n  %s\nin:\n%s\n", needle, hay);
                fail();
        }
}

/* ---- docs/rules.md examples ---- */

/* Does got (lines) match want (lines), where a want line "…" stands for
 * any number of lines? */
static bool lines_match(char **want, size_t nw, char **got, size_t ng) {
        if (nw == 0)
                return ng == 0;
        if (!strcmp(want[0], "…")) {
                for (size_t k = 0; k <= ng; k++)
                        if (lines_match(want + 1, nw - 1, got + k, ng - k))
                                return true;
                return false;
        }
        return ng > 0 && !strcmp(want[0], got[0]) && lines_match(want + 1, nw - 1, got + 1, ng - 1);
}

static size_t split_lines(char *text, char ***ret) {
        size_t n = 0, cap = 16;
        char **v = malloc(cap * sizeof(*v));

        for (char *p = text; *p;) {
                char *nl = strchr(p, '\n');
                if (nl)
                        *nl = 0;
                if (n == cap)
                        v = realloc(v, (cap *= 2) * sizeof(*v));
                v[n++] = p;
                if (!nl)
                        break;
                p = nl + 1;
        }
        *ret = v;
        return n;
}

/* Runs every "$ command" of the fenced blocks in the sections of
 * docs/rules.md whose heading starts with one of the prefixes, and
 * compares stdout and stderr (together) with the lines that follow it. */
static void run_doc_examples(const char *const *sections, size_t n_sections, size_t want_at_least) {
        char path[600];
        snprintf(path, sizeof(path), "%s/docs/rules.md", it.src);
        char *doc = it_read_file(path, NULL);
        char **line;
        size_t n = split_lines(doc, &line), ran = 0;
        bool in_section = false, in_block = false;

        for (size_t i = 0; i < n; i++) {
                if (!strncmp(line[i], "## ", 3)) {
                        in_section = false;
                        for (size_t s = 0; s < n_sections; s++)
                                if (!strncmp(line[i] + 3, sections[s], strlen(sections[s])))
                                        in_section = true;
                }
                if (!in_section)
                        continue;
                if (!strncmp(line[i], "```", 3)) {
                        in_block = !in_block;
                        continue;
                }
                if (!in_block || strncmp(line[i], "$ ", 2))
                        continue;
                /* The command, with its continuation lines. */
                char cmd[8192] = "";
                size_t at = i;
                for (;;) {
                        const char *l = line[i] + (i == at ? 2 : 0);
                        size_t len = strlen(l);
                        bool more = len > 0 && l[len - 1] == '\\';
                        strncat(cmd, l, sizeof(cmd) - strlen(cmd) - 2);
                        if (!more)
                                break;
                        cmd[strlen(cmd) - 1] = ' ';
                        i++;
                }
                size_t w0 = i + 1, w1 = w0;
                while (w1 < n && strncmp(line[w1], "$ ", 2) && strncmp(line[w1], "```", 3))
                        w1++;
                char full[8300];
                snprintf(full, sizeof(full), "(%s) 2>&1", cmd);
                result r = sh(full);
                char **got;
                size_t ng = split_lines(r.out, &got);
                if (ng > 0 && got[ng - 1][0] == 0)
                        ng--;
                if (!lines_match(line + w0, w1 - w0, got, ng)) {
                        fprintf(stderr, "docs/rules.md:%zu: `%s` printed:\n", at + 1, cmd);
                        for (size_t k = 0; k < ng; k++)
                                fprintf(stderr, "  |%s\n", got[k]);
                        fprintf(stderr, "but the docs say:\n");
                        for (size_t k = w0; k < w1; k++)
                                fprintf(stderr, "  |%s\n", line[k]);
                        fail();
                }
                free(got);
                result_free(&r);
                ran++;
                i = w1 - 1;
        }
        fprintf(stderr, "ran %zu examples from docs/rules.md\n", ran);
        assert_true(ran >= want_at_least);
        free(line);
        free(doc);
}

static void docs_examples_of_test_run_as_written(void **state) {
        static const char *const sections[] = { "8." };
        run_doc_examples(sections, 1, 3);
}

/* ---- fenghuo test ---- */

static void bundled_rule_tests_cover_every_default_rule_file_and_pass(void **state) {
        static const char *const files[] = { "bridge", "landslide", "rain", "silence", "water" };
        for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
                char p[600];
                struct stat st;
                snprintf(p, sizeof(p), "%s/rules/%s.yaml", it.src, files[i]);
                assert_int_equal(stat(p, &st), 0);
                snprintf(p, sizeof(p), "%s/rules/tests/%s_test.yaml", it.src, files[i]);
                if (stat(p, &st) != 0) {
                        fprintf(stderr, "rules/%s.yaml has no test file %s\n", files[i], p);
                        fail();
                }
        }
        result r = sh("fenghuo test rules/tests/*_test.yaml");
        if (r.code != 0)
                fprintf(stderr, "%s%s", r.out, r.err);
        assert_int_equal(r.code, 0);
        expect_contains(r.out, "ok: ");
        /* Every rule of the default set is exercised by some test. */
        result c = sh("fenghuo check --rules rules --stations stations/miyun.csv | grep -o '^[a-z_][a-z_]* ' ");
        char **ids;
        size_t n = split_lines(c.out, &ids);
        size_t seen = 0;
        for (size_t i = 0; i < n; i++) {
                if (!ids[i][0])
                        continue;
                char needle[80];
                snprintf(needle, sizeof(needle), "rule: %.*s,", (int) strlen(ids[i]) - 1, ids[i]);
                result g = sh("cat rules/tests/*_test.yaml");
                if (!strstr(g.out, needle)) {
                        fprintf(stderr, "no test expects an alert of rule %s\n", ids[i]);
                        fail();
                } else
                        seen++;
                result_free(&g);
        }
        assert_true(seen >= 11);
        free(ids);
        result_free(&c);
        result_free(&r);
}

static void write_test(const char *name, const char *body) {
        char *text;
        assert_true(asprintf(&text, "rules: %s/tests/data/rules-small\nstations: %s/tests/data/stations-small.csv\n%s",
                             it.src, it.src, body) > 0);
        it_write_file(tmp(name), text);
        free(text);
}

static void a_failing_test_says_what_differed_at_its_line(void **state) {
        write_test("t_test.yaml",
                   "tests:\n"                                                                      /* 3 */
                   "  - name: wrong tier\n"                                                        /* 4 */
                   "    start: 2023-07-30T12:00:00+08:00\n"                                        /* 5 */
                   "    input:\n"                                                                  /* 6 */
                   "      G1 rain_mm: 35x3\n"                                                      /* 7 */
                   "    alerts:\n"                                                                 /* 8 */
                   "      - {at: 5m, rule: rainstorm, sensor: G1, event: raised, level: orange, value: 71}\n" /* 9 */
                   "      - {at: 10m, rule: rainstorm, sensor: G1, event: escalated, level: orange}\n"        /* 10 */
                   "  - name: right\n"
                   "    start: 2023-07-30T12:00:00+08:00\n"
                   "    input:\n"
                   "      G1 rain_mm: 35x3\n"
                   "    alerts:\n"
                   "      - {at: 5m, rule: rainstorm, sensor: G1, event: raised, level: orange, value: 70}\n"
                   "      - {at: 10m, rule: rainstorm, sensor: G1, event: escalated, level: red, value: 105}\n"
                   "  - name: extra\n"
                   "    start: 2023-07-30T12:00:00+08:00\n"
                   "    input:\n"
                   "      G1 rain_mm: 35x3\n"
                   "    alerts:\n"                                                                 /* 22 */
                   "      - {at: 5m, rule: rainstorm, sensor: G1, event: raised, level: orange}\n");
        char cmd[700];
        snprintf(cmd, sizeof(cmd), "fenghuo test %s", tmp("t_test.yaml"));
        result r = sh(cmd);
        assert_int_equal(r.code, 1);
        char want[900];
        snprintf(want, sizeof(want),
                 "%s:9: wrong tier: at 2023-07-30T12:05:00+08:00 expected rainstorm G1 raised orange with value 71, got value 70\n"
                 "%s:10: wrong tier: at 2023-07-30T12:10:00+08:00 expected rainstorm G1 escalated orange, got escalated red\n",
                 tmp("t_test.yaml"), tmp("t_test.yaml"));
        expect_contains(r.out, want);
        snprintf(want, sizeof(want),
                 "%s:23: extra: at 2023-07-30T12:10:00+08:00 got rainstorm G1 escalated red (value 105), which 'alerts' does not list\n",
                 tmp("t_test.yaml"));
        expect_contains(r.out, want);
        expect_contains(r.out, "t_test.yaml: 2 of 3 tests failed\nFAILED: 2 of 3 tests failed\n");
        assert_null(strstr(r.out, "right:"));
        assert_string_equal(r.err, "");
        result_free(&r);
}

static void series_readings_and_only_behave_as_documented(void **state) {
        /* A late reading from `readings` joins the window (the example of
         * docs/rules.md §4); skips, steps up and down, and `only`. */
        write_test("s_test.yaml",
                   "tests:\n"
                   "  - name: late\n"
                   "    start: 2023-07-30T10:00:00+08:00\n"
                   "    interval: 30m\n"
                   "    input:\n"
                   "      G1 rain_mm: 30 15\n"
                   "    readings:\n"
                   "      - '{\"sensor\":\"G1\",\"ts\":\"2023-07-30T10:20:00+08:00\",\"values\":{\"rain_mm\":10}}'\n"
                   "    alerts:\n"
                   "      - {at: 30m, rule: rainstorm, sensor: G1, event: raised, level: orange, value: 55}\n"
                   "  - name: steps\n"
                   "    start: 2023-07-30T00:00:00+08:00\n"
                   "    interval: 10m\n"
                   "    input:\n"
                   "      R1 level_m: 99.5+0.1x6 _x2 100.5-0.5x3 99x3\n"
                   "    only: [river]\n"
                   "    alerts:\n"
                   "      - {at: 1h20m, rule: river, sensor: R1, event: raised, level: yellow, value: 100.5}\n"
                   "      - {at: 2h10m, rule: river, sensor: R1, event: cleared, level: none, value: 99}\n");
        char cmd[700];
        snprintf(cmd, sizeof(cmd), "fenghuo test %s", tmp("s_test.yaml"));
        result r = sh(cmd);
        if (r.code != 0)
                fprintf(stderr, "%s%s", r.out, r.err);
        assert_int_equal(r.code, 0);
        result_free(&r);
}

static void bad_test_files_and_usage_are_reported(void **state) {
        write_test("b_test.yaml",
                   "tests:\n"
                   "  - name: x\n"
                   "    strat: 2023-07-30T12:00:00+08:00\n"
                   "    input:\n"
                   "      G1: 5x3\n"
                   "      G9 rain_mm: 1\n"
                   "    alerts:\n"
                   "      - {at: 5q, rule: rainstorm, sensor: G1, event: raised, level: amber, value: x}\n");
        it_write_file(tmp("y_test.yaml"), "rules: [\n");
        char cmd[1400];
        snprintf(cmd, sizeof(cmd), "fenghuo test %s %s %s", tmp("b_test.yaml"), tmp("y_test.yaml"), tmp("none.yaml"));
        result r = sh(cmd);
        assert_int_equal(r.code, 1);
        char want[800];
        snprintf(want, sizeof(want), "%s:5:5: unknown key 'strat' in a test", tmp("b_test.yaml"));
        expect_contains(r.err, want);
        snprintf(want, sizeof(want), "%s:7:7: a series is named 'SENSOR field'", tmp("b_test.yaml"));
        expect_contains(r.err, want);
        snprintf(want, sizeof(want), "%s:10:14: 'at' must be an RFC 3339 time", tmp("b_test.yaml"));
        expect_contains(r.err, want);
        snprintf(want, sizeof(want), "%s:10:69: 'level' is red, orange, yellow, blue or none, got 'amber'", tmp("b_test.yaml"));
        expect_contains(r.err, want);
        snprintf(want, sizeof(want), "%s:10:83: 'value' must be a number or null, got 'x'", tmp("b_test.yaml"));
        expect_contains(r.err, want);
        snprintf(want, sizeof(want), "%s:2:1: invalid YAML", tmp("y_test.yaml"));
        expect_contains(r.err, want);
        snprintf(want, sizeof(want), "%s: cannot read test file: No such file or directory", tmp("none.yaml"));
        expect_contains(r.err, want);
        expect_contains(r.out, "FAILED: 3 of 3 files invalid\n");
        result_free(&r);

        r = sh("fenghuo test");
        assert_int_equal(r.code, 2);
        expect_contains(r.err, "usage: fenghuo test FILE...");
        result_free(&r);
        r = sh("fenghuo test --bogus x");
        assert_int_equal(r.code, 2);
        result_free(&r);
}

/* ---- fenghuo diff ---- */

/* The Beijing data beside the source tree; skips the test without it. */
static bool have_beijing(void) {
        char data[600];
        snprintf(data, sizeof(data), "%s/../shared/data/beijing-rain/readings.jsonl.gz", it.src);
        if (access(data, R_OK) != 0) {
                fprintf(stderr, "skipped: no %s\n", data);
                return false;
        }
        return true;
}

/* A copy of rules/ with the orange rainstorm threshold lowered to 45 mm. */
static const char *rules_orange45(void) {
        static char dir[300];
        char cmd[2000];
        snprintf(dir, sizeof(dir), "%s/rules-orange45", it.tmpdir);
        snprintf(cmd, sizeof(cmd),
                 "rm -rf '%s' && cp -r rules '%s' && sed -i 's/orange: sum(rain_mm, 3h) >= 50/orange: sum(rain_mm, 3h) >= 45/' '%s/rain.yaml' "
                 "&& grep -q '>= 45' '%s/rain.yaml'",
                 dir, dir, dir, dir);
        result r = sh(cmd);
        assert_int_equal(r.code, 0);
        result_free(&r);
        return dir;
}

static void diff_shows_a_lower_orange_threshold_on_four_years_of_beijing_rain(void **state) {
        if (!have_beijing()) {
                skip();
                return;
        }
        const char *dir = rules_orange45();
        char cmd[2000];
        snprintf(cmd, sizeof(cmd),
                 "zcat ../shared/data/beijing-rain/readings.jsonl.gz | fenghuo diff --old rules --new '%s' "
                 "--stations ../shared/data/beijing-rain/stations.csv -", dir);
        result r = sh(cmd);
        assert_int_equal(r.code, 0);
        expect_contains(r.err, "fenghuo diff: 140110 lines, 140110 readings accepted\n");
        /* What two replays and jq said in docs/rules.md §6: 10 orange
         * rises become 24, 14 yellow become 9, blue stays at 7. */
        expect_contains(r.out, "rainstorm (暴雨预警): 21 alerts before, 28 after: 7 appear, 0 disappear, 9 change, 12 the same\n"
                               "  rises to      red  orange  yellow    blue\n"
                               "  old              0      10      14       7\n"
                               "  new              0      24       9       7\n"
                               "  change                 +14      -5\n");
        /* 46.1 mm in 3 h now raises orange on its own (the first hunk of §6). */
        expect_contains(r.out, "  + BJ-RG-HUAIROU  2013-06-28 21:00 appears, peak orange: orange 06-28 21:00 (46.1) → cleared 06-29 01:00\n");
        expect_contains(r.out, "  ~ BJ-RG-HUAIROU  2013-07-15 05:00 changes: peak yellow → orange\n"
                               "      old: blue 07-15 05:00 (34.7) → yellow 07-15 06:00 (48.2) → blue 07-15 15:00 (5.2) → cleared 07-15 21:00\n"
                               "      new: blue 07-15 05:00 (34.7) → orange 07-15 06:00 (48.2) → yellow 07-15 11:00 (34.8) → blue 07-15 15:00 (5.2) → cleared 07-15 21:00\n");
        expect_contains(r.out, "the same: silence_rain (91)\n");
        assert_int_equal(it_count_substr(r.out, "\n  + "), 7);
        assert_int_equal(it_count_substr(r.out, "\n  ~ "), 9);
        assert_null(strstr(r.out, "\n  - "));
        result_free(&r);

        /* The same as JSON, for scripts. */
        strncat(cmd, " --json 2>/dev/null | jq -c '.rules[] | {rule, appear, disappear, change, same, orange: .rises.orange}'",
                sizeof(cmd) - strlen(cmd) - 1);
        r = sh(cmd);
        assert_int_equal(r.code, 0);
        assert_string_equal(r.out, "{\"rule\":\"rainstorm\",\"appear\":7,\"disappear\":0,\"change\":9,\"same\":12,\"orange\":{\"old\":10,\"new\":24}}\n"
                                   "{\"rule\":\"silence_rain\",\"appear\":0,\"disappear\":0,\"change\":0,\"same\":91,\"orange\":{\"old\":8,\"new\":8}}\n");
        result_free(&r);
}

static void diff_of_a_rule_set_with_itself_shows_nothing_changed(void **state) {
        result r = sh("fenghuo diff --old tests/data/rules-small --new tests/data/rules-small "
                      "--stations tests/data/stations-small.csv tests/data/storm-small.jsonl");
        assert_int_equal(r.code, 0);
        assert_string_equal(r.out, "the same: rainstorm (1) river (1) silent (1)\n");
        result_free(&r);
}

static void diff_takes_removed_rules_and_reports_bad_ones_like_check(void **state) {
        /* The new set lacks the silence rule: its alert disappears. */
        char cmd[1400];
        snprintf(cmd, sizeof(cmd), "mkdir -p '%s/one' && cp tests/data/rules-small/water.yaml '%s/one/' && "
                 "fenghuo diff --old tests/data/rules-small --new '%s/one' --stations tests/data/stations-small.csv "
                 "tests/data/storm-small.jsonl 2>/dev/null", it.tmpdir, it.tmpdir, it.tmpdir);
        result r = sh(cmd);
        assert_int_equal(r.code, 0);
        expect_contains(r.out, "rainstorm (暴雨预警): 1 alert before, 0 after: 0 appear, 1 disappear, 0 change, 0 the same\n");
        expect_contains(r.out, "  - G1             2023-07-30 03:00 disappears, peak red: orange 07-30 03:00 (55) → red 07-30 05:00 (105) → yellow 07-30 07:00 (40) → blue 07-30 11:00 (0) → cleared 07-30 17:00\n");
        expect_contains(r.out, "  - G2             2023-07-30 03:31 disappears, peak blue");
        expect_contains(r.out, "the same: river (1)\n");
        result_free(&r);

        r = sh("fenghuo diff --old tests/data/rules-small --new tests/data/docs/broken --stations tests/data/stations-small.csv "
               "tests/data/storm-small.jsonl");
        assert_int_equal(r.code, 1);
        expect_contains(r.err, "tests/data/docs/broken/bad.yaml:3:11: unknown kind 'rian' (did you mean 'rain'?)\n");
        assert_string_equal(r.out, "");
        result_free(&r);
        /* The per-sensor caps apply to both sides, as in replay. */
        r = sh("fenghuo diff --old tests/data/rules-small --new tests/data/rules-small --stations tests/data/stations-small.csv "
               "--max-readings-per-minute 3 tests/data/docs/flood.jsonl");
        assert_int_equal(r.code, 0);
        assert_string_equal(r.out, "no alerts under either rule set\n");
        expect_contains(r.err, "line 4: rejected (rate_limited): sensor \"G1\" sent more than 3 readings within 60 s");
        result_free(&r);
        r = sh("fenghuo diff --old tests/data/rules-small --new tests/data/rules-small --stations tests/data/stations-small.csv "
               "tests/data/docs/flood.jsonl");
        assert_string_equal(r.out, "the same: rainstorm (1)\n");
        result_free(&r);
        r = sh("fenghuo diff --old tests/data/rules-small --stations tests/data/stations-small.csv");
        assert_int_equal(r.code, 2);
        expect_contains(r.err, "usage: fenghuo diff");
        result_free(&r);
        r = sh("fenghuo diff --old tests/data/rules-small --new tests/data/rules-small --stations tests/data/stations-small.csv "
               "--tick 0s x");
        assert_int_equal(r.code, 2);
        expect_contains(r.err, "--tick wants a positive duration");
        result_free(&r);
}

/* ---- plots ---- */

#ifdef HAVE_LIBXML2
typedef struct svg {
        xmlDocPtr doc;
        xmlXPathContextPtr xp;
} svg;

static svg svg_open(const char *file) {
        svg s;
        s.doc = xmlReadFile(file, NULL, XML_PARSE_NONET);
        if (!s.doc) {
                fprintf(stderr, "%s is not well-formed XML\n", file);
                fail();
        }
        assert_string_equal((const char *) xmlDocGetRootElement(s.doc)->name, "svg");
        s.xp = xmlXPathNewContext(s.doc);
        xmlXPathRegisterNs(s.xp, BAD_CAST "s", BAD_CAST "http://www.w3.org/2000/svg");
        return s;
}

static void svg_close(svg *s) {
        xmlXPathFreeContext(s->xp);
        xmlFreeDoc(s->doc);
}

/* Each node's attributes, "a|b|c", one line per node, in document order. */
static char *svg_attrs(svg *s, const char *xpath, const char *const *names, size_t n) {
        xmlXPathObjectPtr o = xmlXPathEvalExpression(BAD_CAST xpath, s->xp);
        char *out = calloc(1, 1);
        size_t len = 0;

        assert_non_null(o);
        for (int i = 0; o->nodesetval && i < o->nodesetval->nodeNr; i++)
                for (size_t k = 0; k < n; k++) {
                        xmlChar *v = xmlGetProp(o->nodesetval->nodeTab[i], BAD_CAST names[k]);
                        const char *t = v ? (const char *) v : "";
                        char *grown = realloc(out, len + strlen(t) + 2);
                        if (!grown)
                                abort();
                        out = grown;
                        len += (size_t) sprintf(out + len, "%s%s", t, k + 1 < n ? "|" : "\n");
                        xmlFree(v);
                }
        xmlXPathFreeObject(o);
        return out;
}

static int svg_count(svg *s, const char *xpath) {
        xmlXPathObjectPtr o = xmlXPathEvalExpression(BAD_CAST xpath, s->xp);
        assert_non_null(o);
        int n = o->nodesetval ? o->nodesetval->nodeNr : 0;
        xmlXPathFreeObject(o);
        return n;
}
#endif

static void plot_draws_each_tier_threshold_and_shades_exactly_where_alerts_were_active(void **state) {
#ifndef HAVE_LIBXML2
        fprintf(stderr, "skipped: built without libxml2 (libxml2-dev)\n");
        skip();
#else
        char cmd[1400];
        snprintf(cmd, sizeof(cmd), "fenghuo plot --rules tests/data/rules-small --stations tests/data/stations-small.csv "
                 "--sensor G1 --rule rainstorm -o '%s' tests/data/storm-small.jsonl", tmp("g1.svg"));
        result r = sh(cmd);
        assert_int_equal(r.code, 0);
        assert_string_equal(r.out, "");
        result_free(&r);
        svg s = svg_open(tmp("g1.svg"));
        static const char *const thr[] = { "data-tier", "data-value" };
        char *t = svg_attrs(&s, "//s:path[@class='threshold']", thr, 2);
        assert_string_equal(t, "red|100\norange|50\nyellow|50\nblue|50\n");
        free(t);
        /* The spans are the alerts replay reports for G1: raised orange at
         * 03:00, red at 05:00, yellow at 07:00, blue at 11:00, cleared at 17:00. */
        static const char *const span[] = { "data-tier", "data-from", "data-to" };
        t = svg_attrs(&s, "//s:rect[@class='active']", span, 3);
        assert_string_equal(t, "orange|2023-07-30T03:00:00+08:00|2023-07-30T05:00:00+08:00\n"
                               "red|2023-07-30T05:00:00+08:00|2023-07-30T07:00:00+08:00\n"
                               "yellow|2023-07-30T07:00:00+08:00|2023-07-30T11:00:00+08:00\n"
                               "blue|2023-07-30T11:00:00+08:00|2023-07-30T17:00:00+08:00\n");
        free(t);
        result ev = sh("fenghuo replay --rules tests/data/rules-small --stations tests/data/stations-small.csv "
                       "tests/data/storm-small.jsonl 2>/dev/null | jq -r 'select(.sensor == \"G1\") | [.level, .ts] | join(\"|\")'");
        assert_string_equal(ev.out, "orange|2023-07-30T03:00:00+08:00\nred|2023-07-30T05:00:00+08:00\n"
                                    "yellow|2023-07-30T07:00:00+08:00\nblue|2023-07-30T11:00:00+08:00\n"
                                    "none|2023-07-30T17:00:00+08:00\n");
        result_free(&ev);
        /* One report line; one bar per reading with rain; the quantities of
         * yellow (6 h) and blue (12 h) drawn beside the 3 h report. */
        assert_int_equal(svg_count(&s, "//s:path[@class='report']"), 1);
        result n = sh("grep G1 tests/data/storm-small.jsonl | grep -vc '\"rain_mm\":0[,}]'");
        assert_int_equal(svg_count(&s, "//s:g[@class='readings']/s:rect[@class='reading']"), atoi(n.out));
        result_free(&n);
        assert_int_equal(svg_count(&s, "//s:path[@class='quantity']"), 2);
        svg_close(&s);

        /* Without --rule, every rule of the station; --from/--to narrow it. */
        snprintf(cmd, sizeof(cmd), "fenghuo plot --rules tests/data/rules-small --stations tests/data/stations-small.csv "
                 "--sensor G1 --from 2023-07-30T04:00:00+08:00 --to 2023-07-30T08:00:00+08:00 tests/data/storm-small.jsonl > '%s'",
                 tmp("g1all.svg"));
        r = sh(cmd);
        assert_int_equal(r.code, 0);
        result_free(&r);
        s = svg_open(tmp("g1all.svg"));
        static const char *const panel[] = { "data-rule" };
        t = svg_attrs(&s, "//s:g[@class='panel']", panel, 1);
        assert_string_equal(t, "rainstorm\nsilent\n");
        free(t);
        t = svg_attrs(&s, "//s:rect[@class='active']", span, 3);
        assert_string_equal(t, "orange|2023-07-30T04:00:00+08:00|2023-07-30T05:00:00+08:00\n"
                               "red|2023-07-30T05:00:00+08:00|2023-07-30T07:00:00+08:00\n"
                               "yellow|2023-07-30T07:00:00+08:00|2023-07-30T08:00:00+08:00\n");
        free(t);
        svg_close(&s);
#endif
}

static void plot_refuses_what_it_cannot_draw(void **state) {
        result r = sh("fenghuo plot --rules tests/data/rules-small --stations tests/data/stations-small.csv --sensor G9 "
                      "tests/data/storm-small.jsonl");
        assert_int_equal(r.code, 1);
        assert_string_equal(r.err, "fenghuo plot: no station 'G9' in tests/data/stations-small.csv\n");
        result_free(&r);
        r = sh("fenghuo plot --rules tests/data/rules-small --stations tests/data/stations-small.csv --sensor R1 --rule rainstorm "
               "tests/data/storm-small.jsonl");
        assert_int_equal(r.code, 1);
        assert_string_equal(r.err, "fenghuo plot: rule 'rainstorm' does not apply to R1\n");
        result_free(&r);
        r = sh("fenghuo plot --rules tests/data/rules-small --stations tests/data/stations-small.csv --sensor G1 "
               "--from 2024-01-01T00:00:00+08:00 tests/data/storm-small.jsonl");
        assert_int_equal(r.code, 1);
        assert_string_equal(r.err, "fenghuo plot: no readings of G1 in the range to plot\n");
        assert_string_equal(r.out, "");
        result_free(&r);
        r = sh("fenghuo plot --rules tests/data/rules-small --stations tests/data/stations-small.csv --sensor G1 --from yesterday");
        assert_int_equal(r.code, 2);
        expect_contains(r.err, "--from wants an RFC 3339 time");
        result_free(&r);
        r = sh("fenghuo plot --rules tests/data/rules-small --stations tests/data/stations-small.csv --sensor G1 "
               "--max-window-samples x tests/data/storm-small.jsonl");
        assert_int_equal(r.code, 2);
        assert_string_equal(r.err, "fenghuo plot: --max-window-samples wants a count (0: no cap), got 'x'\n");
        result_free(&r);
        r = sh("fenghuo plot --rules tests/data/rules-small --sensor G1");
        assert_int_equal(r.code, 2);
        result_free(&r);
}

static void diff_writes_a_plot_of_each_changed_alert(void **state) {
        if (!have_beijing()) {
                skip();
                return;
        }
        const char *dir = rules_orange45();
        char cmd[2000];
        snprintf(cmd, sizeof(cmd),
                 "zcat ../shared/data/beijing-rain/readings.jsonl.gz | fenghuo diff --old rules --new '%s' "
                 "--stations ../shared/data/beijing-rain/stations.csv --plots '%s' - >/dev/null", dir, tmp("plots"));
        result r = sh(cmd);
        assert_int_equal(r.code, 0);
        expect_contains(r.err, "fenghuo diff: 16 plots written to ");
        result_free(&r);
        snprintf(cmd, sizeof(cmd), "ls '%s'", tmp("plots"));
        r = sh(cmd);
        assert_int_equal(it_count_substr(r.out, ".svg\n"), 16);
        expect_contains(r.out, "rainstorm_BJ-RG-HUAIROU_20130628T2100.svg\n");
        expect_contains(r.out, "rainstorm_BJ-RG-HUAIROU_20130715T0500.svg\n");
        result_free(&r);
#ifdef HAVE_LIBXML2
        /* Old above new: the orange threshold moved from 50 to 45, and
         * orange is shaded only in the new panel. */
        char file[700];
        snprintf(file, sizeof(file), "%s/rainstorm_BJ-RG-HUAIROU_20130715T0500.svg", tmp("plots"));
        svg s = svg_open(file);
        static const char *const thr[] = { "data-tier", "data-value" };
        char *t = svg_attrs(&s, "//s:g[@data-run='old']/s:path[@class='threshold' and @data-tier='orange']", thr, 2);
        assert_string_equal(t, "orange|50\n");
        free(t);
        t = svg_attrs(&s, "//s:g[@data-run='new']/s:path[@class='threshold' and @data-tier='orange']", thr, 2);
        assert_string_equal(t, "orange|45\n");
        free(t);
        static const char *const span[] = { "data-tier", "data-from", "data-to" };
        t = svg_attrs(&s, "//s:g[@data-run='old']/s:rect[@class='active' and @data-tier='orange']", span, 3);
        assert_string_equal(t, "");
        free(t);
        t = svg_attrs(&s, "//s:g[@data-run='new']/s:rect[@class='active' and @data-tier='orange']", span, 3);
        assert_string_equal(t, "orange|2013-07-15T06:00:00+08:00|2013-07-15T11:00:00+08:00\n");
        free(t);
        svg_close(&s);
#endif
}

/* Four years of hourly rain are 35,000 points: drawn per pixel column,
 * the picture stays small enough for a browser and a mail. */
static void a_plot_of_four_years_stays_small(void **state) {
        if (!have_beijing()) {
                skip();
                return;
        }
        char cmd[1400];
        snprintf(cmd, sizeof(cmd),
                 "zcat ../shared/data/beijing-rain/readings.jsonl.gz | fenghuo plot --rules rules "
                 "--stations ../shared/data/beijing-rain/stations.csv --sensor BJ-RG-HUAIROU --rule rainstorm -o '%s' - 2>/dev/null",
                 tmp("4y.svg"));
        result r = sh(cmd);
        assert_int_equal(r.code, 0);
        result_free(&r);
        struct stat st;
        assert_int_equal(stat(tmp("4y.svg"), &st), 0);
        fprintf(stderr, "four years: %lld bytes\n", (long long) st.st_size);
        assert_true(st.st_size < 400 * 1024);
#ifdef HAVE_LIBXML2
        svg s = svg_open(tmp("4y.svg"));
        /* Every level of the four years is still shaded: one stretch per
         * event of replay that is not a clear. */
        result ev = sh("zcat ../shared/data/beijing-rain/readings.jsonl.gz | fenghuo replay --rules rules "
                       "--stations ../shared/data/beijing-rain/stations.csv - 2>/dev/null "
                       "| grep '\"rule\":\"rainstorm\",\"sensor\":\"BJ-RG-HUAIROU\"' | grep -vc '\"event\":\"cleared\"'");
        assert_int_equal(atoi(ev.out), 16);
        assert_int_equal(svg_count(&s, "//s:rect[@class='active']"), 16);
        assert_int_equal(svg_count(&s, "//s:rect[@class='active' and @data-tier='orange']"), 2);
        result_free(&ev);
        assert_int_equal(svg_count(&s, "//s:path[@class='report']"), 1);
        svg_close(&s);
#endif
}

/* Headless Chromium opens a plot and draws it: the screenshot of the plot
 * must hold far more than one of an empty page of the same size. */
static void a_plot_opens_in_a_browser(void **state) {
        result c = sh("command -v chromium || command -v chromium-browser");
        if (c.code != 0) {
                fprintf(stderr, "skipped: no chromium (Debian package 'chromium'; ./dev deps installs it)\n");
                result_free(&c);
                skip();
                return;
        }
        char browser[300];
        snprintf(browser, sizeof(browser), "%.*s", (int) strcspn(c.out, "\n"), c.out);
        result_free(&c);
        char cmd[3000];
        snprintf(cmd, sizeof(cmd), "fenghuo plot --rules tests/data/rules-small --stations tests/data/stations-small.csv "
                 "--sensor G1 -o '%s' tests/data/storm-small.jsonl", tmp("shot.svg"));
        result r = sh(cmd);
        assert_int_equal(r.code, 0);
        result_free(&r);
        it_write_file(tmp("blank.svg"), "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"1100\" height=\"900\">"
                                        "<rect width=\"100%\" height=\"100%\" fill=\"white\"/></svg>\n");
        static const char *const names[] = { "shot", "blank" };
        long size[2];
        for (int i = 0; i < 2; i++) {
                snprintf(cmd, sizeof(cmd),
                         "d=$(mktemp -d) && timeout 120 '%s' --headless --no-sandbox --disable-gpu --disable-background-networking "
                         "--disable-component-update --disable-sync --no-first-run --user-data-dir=\"$d\" "
                         "--window-size=1100,900 --screenshot='%s/%s.png' 'file://%s/%s.svg' >/dev/null 2>&1; "
                         "rc=$?; rm -rf \"$d\"; exit $rc",
                         browser, it.tmpdir, names[i], it.tmpdir, names[i]);
                r = sh(cmd);
                assert_int_equal(r.code, 0);
                result_free(&r);
                char png[600];
                struct stat st;
                snprintf(png, sizeof(png), "%s/%s.png", it.tmpdir, names[i]);
                assert_int_equal(stat(png, &st), 0);
                size_t n;
                char *data = it_read_file(png, &n);
                assert_true(n > 8 && !memcmp(data, "\x89PNG\r\n\x1a\n", 8));
                free(data);
                size[i] = (long) st.st_size;
        }
        fprintf(stderr, "screenshot %ld bytes, of a blank page %ld bytes\n", size[0], size[1]);
        assert_true(size[0] > 4 * size[1]);
}

static void docs_examples_of_diff_and_plot_run_as_written(void **state) {
        if (!have_beijing()) {
                skip();
                return;
        }
        static const char *const sections[] = { "9.", "10." };
        run_doc_examples(sections, 2, 6);
}

static int setup(void **state) {
        return it_init("fenghuo-tools");
}

static int teardown(void **state) {
        return it_remove_tmpdir();
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(bundled_rule_tests_cover_every_default_rule_file_and_pass),
                cmocka_unit_test(a_failing_test_says_what_differed_at_its_line),
                cmocka_unit_test(series_readings_and_only_behave_as_documented),
                cmocka_unit_test(bad_test_files_and_usage_are_reported),
                cmocka_unit_test(docs_examples_of_test_run_as_written),
                cmocka_unit_test(diff_shows_a_lower_orange_threshold_on_four_years_of_beijing_rain),
                cmocka_unit_test(diff_of_a_rule_set_with_itself_shows_nothing_changed),
                cmocka_unit_test(diff_takes_removed_rules_and_reports_bad_ones_like_check),
                cmocka_unit_test(plot_draws_each_tier_threshold_and_shades_exactly_where_alerts_were_active),
                cmocka_unit_test(plot_refuses_what_it_cannot_draw),
                cmocka_unit_test(diff_writes_a_plot_of_each_changed_alert),
                cmocka_unit_test(a_plot_of_four_years_stays_small),
                cmocka_unit_test(a_plot_opens_in_a_browser),
                cmocka_unit_test(docs_examples_of_diff_and_plot_run_as_written),
        };
        return cmocka_run_group_tests(tests, setup, teardown);
}
