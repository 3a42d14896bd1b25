/* The feeding recipe of docs/integration.md, run as the page prints it
 * against a real broker: a simulated storm split by kind and keyed by
 * sensor into the input topics, a live one-kind feed, the daemon reading
 * what the recipe produced (judged against replay), and the two kcat
 * consumer groups of the page, one new at the end and one from the
 * beginning. The blocks are read from the page, so the page cannot drift
 * from what was tested. */
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

#define MARK "<!-- tests/test_feed.c runs this block"

/* The n-th shell block the page marks for this test; the caller frees it. */
static char *doc_block(int n) {
        char path[600];
        snprintf(path, sizeof(path), "%s/docs/integration.md", it.src);
        char *doc = it_read_file(path, NULL);
        char *p = doc;
        for (int i = 0; i <= n; i++) {
                p = strstr(p, MARK);
                assert_non_null(p);
                p += strlen(MARK);
        }
        char *start = strstr(p, "```sh\n");
        assert_non_null(start);
        start += strlen("```sh\n");
        char *end = strstr(start, "\n```");
        assert_non_null(end);
        char *block = strndup(start, (size_t) (end - start) + 1);
        free(doc);
        return block;
}

/* Runs a block with sh -e in dir, `fenghuo` on PATH; fails on a non-zero exit. */
static void run_block(int n, const char *dir) {
        char *block = doc_block(n);
        char bindir[600], path[2048], cwd[1024], err[700];

        snprintf(bindir, sizeof(bindir), "%s/bin", dir);
        if (access(bindir, F_OK) != 0) {
                assert_int_equal(mkdir(bindir, 0755), 0);
                char link[700];
                snprintf(link, sizeof(link), "%s/fenghuo", bindir);
                assert_int_equal(symlink(it.bin, link), 0);
                snprintf(link, sizeof(link), "%s/stations", dir);
                char target[600];
                snprintf(target, sizeof(target), "%s/stations", it.src);
                assert_int_equal(symlink(target, link), 0);
        }
        snprintf(path, sizeof(path), "%s:%s", bindir, getenv("PATH") ? getenv("PATH") : "/usr/bin:/bin");
        assert_non_null(getcwd(cwd, sizeof(cwd)));
        assert_int_equal(chdir(dir), 0);
        setenv("PATH", path, 1);
        snprintf(err, sizeof(err), "%s/block-%d.err", dir, n);
        /* A bounded run: a kcat that never reached the end fails, not hangs. */
        const char *argv[] = { "/usr/bin/timeout", "120", "/bin/sh", "-ec", block, NULL };
        int code = it_run(argv, NULL, NULL, err);
        assert_int_equal(chdir(cwd), 0);
        if (code != 0) {
                char *e = it_read_file_or_empty(err, NULL);
                fail_msg("block %d of docs/integration.md exited %d:\n%s\n%s", n, code, block, e);
        }
        free(block);
}

static const char *kind_of(const char *sensor) {
        /* Miyun's ids: MY-RG rain, MY-WL water level, MY-LS landslide, MY-BR bridge. */
        if (!strncmp(sensor, "MY-RG-", 6)) return "rain";
        if (!strncmp(sensor, "MY-WL-", 6)) return "water_level";
        if (!strncmp(sensor, "MY-LS-", 6)) return "landslide";
        if (!strncmp(sensor, "MY-BR-", 6)) return "bridge";
        return "?";
}

static void the_feeding_recipe_reaches_the_daemon_keyed_by_sensor(void **state) {
        IT_NEED_SERVERS();
        it_env t;
        it_env_init(&t, "feed", 3, it.rules_dir, false);
        setenv("BROKER", it.bootstrap, 1);
        setenv("TOPIC", t.name, 1);

        /* 1. The storm, split by kind, keyed by sensor. */
        run_block(0, t.dir);
        char storm[600];
        snprintf(storm, sizeof(storm), "%s/storm.jsonl", t.dir);
        it_input in;
        in.text = it_read_file(storm, NULL);
        in.line = it_strs_lines(in.text);
        assert_true(in.line.n > 1000);

        size_t total = 0;
        for (int k = 0; k < IT_N_KINDS; k++) {
                it_reader r;
                it_reader_open(&r, t.topic[k]);
                it_reader_drain(&r);
                const char *kind = strchr(t.topic[k], '.') + 1;
                size_t want = 0;
                for (size_t i = 0; i < in.line.n; i++) {
                        char s[80];
                        it_json_str(in.line.v[i], "sensor", s, sizeof(s));
                        want += !strcmp(kind_of(s), kind);
                }
                assert_true(want > 0);
                assert_int_equal(r.value.n, want);
                for (size_t i = 0; i < r.value.n; i++) {
                        char s[80];
                        it_json_str(r.value.v[i], "sensor", s, sizeof(s));
                        assert_string_equal(r.key.v[i], s);
                        assert_string_equal(kind_of(s), kind);
                }
                total += r.value.n;
                it_reader_close(&r);
        }
        assert_int_equal(total, in.line.n);

        /* 2. The daemon reads what the recipe produced: replay's alerts. */
        it_strs want = it_replay(&t, &in, in.line.n, "feed", NULL);
        assert_true(want.n > 0);
        char state_dir[600];
        snprintf(state_dir, sizeof(state_dir), "%s/state", t.dir);
        it_config c = { .state_dir = state_dir };
        it_config_write(&t, t.config, &c);
        it_proc d;
        char log[600];
        snprintf(log, sizeof(log), "%s/daemon.log", t.dir);
        it_daemon_start(&d, t.config, log, 30);
        it_reader alerts;
        it_reader_open(&alerts, t.alerts);
        double deadline = it_now() + 120;
        while (alerts.value.n < want.n && it_now() < deadline) {
                it_daemon_check_alive(&d);
                it_reader_poll(&alerts, 500);
        }
        it_daemon_stop(&d, 30);
        it_assert_alerts_equal("alerts of the fed storm", IT_PER_SENSOR, &want, &alerts.value);
        it_reader_close(&alerts);

        /* 3. The page's consumer groups on the alerts topic, twice. */
        setenv("ALERTS", t.alerts, 1);
        for (int run = 0; run < 2; run++) {
                run_block(2, t.dir);
                const char *names[] = { "late", "new", "all" };
                /* late: a new group at the end; new: everything once, then
                 * only what is new; all: everything on every run. */
                bool want_all[2][3] = { { false, true, true }, { false, false, true } };
                for (int i = 0; i < 3; i++) {
                        char path[600];
                        snprintf(path, sizeof(path), "%s/%s.jsonl", t.dir, names[i]);
                        char *text = it_read_file(path, NULL);
                        it_strs got = it_strs_lines(text);
                        free(text);
                        char what[80];
                        snprintf(what, sizeof(what), "run %d, %s.jsonl", run + 1, names[i]);
                        if (want_all[run][i])
                                it_assert_alerts_equal(what, IT_PER_SENSOR, &want, &got);
                        else if (got.n != 0)
                                fail_msg("%s: %zu alerts, want none", what, got.n);
                        it_strs_free(&got);
                }
        }

        it_strs_free(&want);
        it_input_free(&in);
}

static void a_live_feed_of_one_kind_is_produced_line_by_line(void **state) {
        IT_NEED_SERVERS();
        it_env t;
        it_env_init(&t, "live", 1, it.rules_dir, false);
        setenv("BROKER", it.bootstrap, 1);
        setenv("TOPIC", t.name, 1);
        /* Block 0 leaves storm.jsonl, which the live block reads. */
        char storm_src[600], storm[600];
        snprintf(storm_src, sizeof(storm_src), "%s/feed/storm.jsonl", it.tmpdir);
        snprintf(storm, sizeof(storm), "%s/storm.jsonl", t.dir);
        char *text = it_read_file(storm_src, NULL);
        it_write_file(storm, text);
        run_block(1, t.dir);

        size_t want = it_count_substr(text, "\"MY-RG-0001\"");
        free(text);
        it_reader r;
        it_reader_open(&r, t.topic[0]);
        it_reader_drain(&r);
        assert_true(want > 10);
        assert_int_equal(r.value.n, want);
        for (size_t i = 0; i < r.value.n; i++) {
                assert_string_equal(r.key.v[i], "MY-RG-0001");
                assert_non_null(strstr(r.value.v[i], "\"sensor\":\"MY-RG-0001\""));
        }
        it_reader_close(&r);
}

static int setup(void **state) {
        return it_servers_setup("fenghuo-feed", false);
}

static int teardown(void **state) {
        return it_servers_teardown();
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(the_feeding_recipe_reaches_the_daemon_keyed_by_sensor,
                                                it_test_setup, it_test_teardown),
                cmocka_unit_test_setup_teardown(a_live_feed_of_one_kind_is_produced_line_by_line,
                                                it_test_setup, it_test_teardown),
        };
        return cmocka_run_group_tests(tests, setup, teardown);
}
