/* The daemon's configuration file (src/daemon/config.c, docs/operations.md):
 * the shipped example loads, defaults fill what is left out, and each
 * mistake an operator can make is reported at its line and column. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>
#include <cmocka.h>

#include "config.h"

static char path[64];

static const char *write_config(const char *text) {
        snprintf(path, sizeof(path), "/tmp/fenghuo-test-config-XXXXXX");
        int fd = mkstemp(path);
        assert_true(fd >= 0);
        assert_int_equal(write(fd, text, strlen(text)), (ssize_t) strlen(text));
        close(fd);
        return path;
}

/* All diagnostics as "line:col: message" lines. */
static void diags_text(const fh_diags *d, char *out, size_t n) {
        size_t at = 0;

        out[0] = 0;
        for (size_t i = 0; i < d->n && at < n; i++)
                at += (size_t) snprintf(out + at, n - at, "%u:%u: %s\n", d->v[i].line, d->v[i].col, d->v[i].msg);
}

static void shipped_example_loads_with_every_section(void **state) {
        char p[4096];
        const char *src = getenv("SRCDIR");
        fh_diags d = FH_DIAGS_NULL;
        fh_daemon_config c;

        assert_non_null(src);
        snprintf(p, sizeof(p), "%s/etc/fenghuo.yaml", src);
        assert_int_equal(fh_daemon_config_load(p, &c, &d), 0);
        assert_int_equal(d.n, 0);
        assert_string_equal(c.rules, "/etc/fenghuo/rules");
        assert_string_equal(c.topics[FH_KIND_RAIN], "miyun.sensors.rain");
        assert_string_equal(c.topics[FH_KIND_BRIDGE], "miyun.sensors.bridge");
        assert_int_equal(c.tick_ms, 60000);
        assert_int_equal(c.max_readings_per_minute, 60);
        assert_int_equal(c.max_window_samples, 50000);
        assert_int_equal(c.tz_offset_min, 480);
        assert_int_equal(c.shards, 0);
        assert_true(c.redis_enabled);
        assert_int_equal(c.redis.port, 6379);
        assert_string_equal(c.path, p);
        fh_daemon_config_free(&c);
}

static void defaults_fill_what_is_left_out(void **state) {
        fh_diags d = FH_DIAGS_NULL;
        fh_daemon_config c;

        write_config("rules: r\nstations: s.csv\nkafka:\n  brokers: b:9092\n  topics: {rain: in}\n");
        assert_int_equal(fh_daemon_config_load(path, &c, &d), 0);
        unlink(path);
        assert_int_equal(c.lateness_ms, 3600000);
        assert_int_equal(c.future_ms, 600000);
        assert_int_equal(c.max_readings_per_minute, 60);   /* the engine's defaults */
        assert_int_equal(c.max_window_samples, 50000);
        assert_int_equal(c.checkpoint_ms, 30000);
        assert_int_equal(c.log_level, LOG_INFO);
        assert_string_equal(c.group_id, "fenghuo");
        assert_null(c.state_dir);
        assert_null(c.topics[FH_KIND_WATER_LEVEL]);
        assert_false(c.redis_enabled);
        assert_false(c.event_clock);
        assert_int_equal(c.shards, 0);
        fh_daemon_config_free(&c);
}

static void every_mistake_is_reported_at_its_place(void **state) {
        fh_diags d = FH_DIAGS_NULL;
        fh_daemon_config c = { .rules = (char *) "untouched" };
        char text[2048];

        write_config("rules: r\n"
                     "stations: s.csv\n"
                     "tick: 1.5m\n"
                     "timezone: Beijing\n"
                     "log_levle: info\n"
                     "kafka:\n"
                     "  brokers: b:9092\n"
                     "  topics: {rain: in, river: x}\n"
                     "  max_in_flight: 5\n"
                     "redis:\n"
                     "  port: http\n"
                     "shards: 65\n");
        assert_int_equal(fh_daemon_config_load(path, &c, &d), -EINVAL);
        unlink(path);
        assert_string_equal(c.rules, "untouched");   /* ret untouched on failure */
        diags_text(&d, text, sizeof(text));
        assert_non_null(strstr(text, "3:7: 'tick' must be a duration like 30s, 10m, 1h or 1d, not '1.5m'\n"));
        assert_non_null(strstr(text, "4:11: 'timezone' must be a UTC offset like +08:00, not 'Beijing'\n"));
        assert_non_null(strstr(text, "5:1: unknown key 'log_levle' in the configuration\n"));
        assert_non_null(strstr(text, "8:22: unknown station kind 'river' in kafka.topics"));
        assert_non_null(strstr(text, "9:18: 'max_in_flight' must be a whole number in 100..10000000\n"));
        assert_non_null(strstr(text, "11:9: 'port' must be a whole number in 1..65535\n"));
        assert_non_null(strstr(text, "12:9: 'shards' must be a whole number in 0..64\n"));
        assert_int_equal(d.n_errors, 7);
        fh_diags_clear(&d);
}

static void required_keys_are_named_when_missing(void **state) {
        fh_diags d = FH_DIAGS_NULL;
        fh_daemon_config c;
        char text[2048];

        write_config("tick: 30s\n");
        assert_int_equal(fh_daemon_config_load(path, &c, &d), -EINVAL);
        unlink(path);
        diags_text(&d, text, sizeof(text));
        assert_non_null(strstr(text, "'rules' (the rules directory) is required"));
        assert_non_null(strstr(text, "'stations' (the station registry) is required"));
        assert_non_null(strstr(text, "'kafka.brokers' is required"));
        assert_non_null(strstr(text, "'kafka.topics' must name at least one input topic"));
        fh_diags_clear(&d);
}

static void cap_output_keys_are_read_and_checked(void **state) {
        static const char base[] = "rules: r\nstations: s.csv\nkafka:\n  brokers: b:9092\n  topics: {rain: in}\n";
        fh_diags d = FH_DIAGS_NULL;
        fh_daemon_config c;
        char text[1024], why[2048];

        snprintf(text, sizeof(text), "%s  cap_topic: miyun.cap\ncap_dir: /var/lib/fenghuo/cap\n"
                 "cap_unit: \"11011800100000\"\ncap_sender: 密云区气象局\ncap_status: Exercise\n", base);
        write_config(text);
        assert_int_equal(fh_daemon_config_load(path, &c, &d), 0);
        unlink(path);
        assert_string_equal(c.cap_topic, "miyun.cap");
        assert_string_equal(c.cap_dir, "/var/lib/fenghuo/cap");
        assert_string_equal(c.cap_unit, "11011800100000");
        assert_string_equal(c.cap_sender, "密云区气象局");
        assert_true(c.cap_exercise);
        fh_daemon_config_free(&c);

        /* A daemon publishes real warnings unless told otherwise. */
        snprintf(text, sizeof(text), "%scap_dir: cap\n", base);
        write_config(text);
        assert_int_equal(fh_daemon_config_load(path, &c, &d), 0);
        unlink(path);
        assert_false(c.cap_exercise);
        assert_null(c.cap_unit);
        fh_daemon_config_free(&c);

        const struct { const char *extra, *want; } bad[] = {
                { "cap_dir: cap\ncap_status: Test\n", "'cap_status' must be Actual or Exercise" },
                { "cap_dir: cap\ncap_unit: \"110118\"\n", "issuing-unit code must be 14 digits" },
                { "cap_dir: cap\ncap_sender: a,b\n", "without spaces, commas" },
                { "cap_unit: \"11011800000000\"\n", "need 'kafka.cap_topic' or 'cap_dir'" },
        };
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                snprintf(text, sizeof(text), "%s%s", base, bad[i].extra);
                write_config(text);
                assert_int_equal(fh_daemon_config_load(path, &c, &d), -EINVAL);
                unlink(path);
                diags_text(&d, why, sizeof(why));
                if (!strstr(why, bad[i].want))
                        fail_msg("%s: got\n%s", bad[i].extra, why);
                fh_diags_clear(&d);
        }
}

static void unreadable_and_invalid_yaml_files_are_errors_not_crashes(void **state) {
        fh_diags d = FH_DIAGS_NULL;
        fh_daemon_config c;
        char text[2048];

        assert_int_equal(fh_daemon_config_load("/nonexistent/fenghuo.yaml", &c, &d), -EINVAL);
        write_config("rules: [unclosed\n");
        assert_int_equal(fh_daemon_config_load(path, &c, &d), -EINVAL);
        write_config("");
        assert_int_equal(fh_daemon_config_load(path, &c, &d), -EINVAL);
        write_config("- a list\n- not a mapping\n");
        assert_int_equal(fh_daemon_config_load(path, &c, &d), -EINVAL);
        unlink(path);
        diags_text(&d, text, sizeof(text));
        assert_non_null(strstr(text, "cannot read configuration: No such file or directory"));
        assert_non_null(strstr(text, "YAML: "));
        assert_non_null(strstr(text, "the configuration file is empty"));
        assert_non_null(strstr(text, "the configuration must be a mapping"));
        fh_diags_clear(&d);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(shipped_example_loads_with_every_section),
                cmocka_unit_test(defaults_fill_what_is_left_out),
                cmocka_unit_test(every_mistake_is_reported_at_its_place),
                cmocka_unit_test(required_keys_are_named_when_missing),
                cmocka_unit_test(cap_output_keys_are_read_and_checked),
                cmocka_unit_test(unreadable_and_invalid_yaml_files_are_errors_not_crashes),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
