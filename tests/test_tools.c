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
        };
        return cmocka_run_group_tests(tests, setup, teardown);
}
