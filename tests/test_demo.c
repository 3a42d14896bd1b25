/* `fenghuo demo` end to end: the real daemon on the embedded Kafka must
 * raise exactly the alerts `simulate | replay` raises, on every run and on
 * a busy machine (issue 8: one run of three printed false bridge-silence
 * alerts, cleared before they were raised, and a summary of 161 against
 * replay's 153). */
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
                snprintf(summary, sizeof(summary), "\nalerts: %zu (", n_want);
                assert_int_equal(it_file_count(err, summary), 1);
                free(got);
        }
        hogs_stop(hogs, 2);
        free(want);
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
        };
        return cmocka_run_group_tests(tests, setup, teardown);
}
