/* Exactly-once on the alerts topic (src/daemon/dedupe.c): the key that
 * recognises an alert regenerated after a crash, and the set that holds
 * them. The Kafka scans are covered by the recovery suite. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "dedupe.h"

static const char *alert_json =
        "{\"alert_id\":\"storm:A:1690650000000\",\"event\":\"raised\",\"rule\":\"storm\",\"sensor\":\"A\","
        "\"level\":\"orange\",\"previous\":\"none\",\"severity\":2,\"ts\":\"2023-07-30T01:00:00+08:00\","
        "\"value\":63.5,\"title\":\"t\",\"station\":{\"name\":\"n\"},\"message\":\"m\"}";

static void dedupe_key_is_alert_id_event_and_ts(void **state) {
        char key[256];

        assert_int_equal(fh_alert_dedupe_key(alert_json, strlen(alert_json), key, sizeof(key)), 0);
        assert_string_equal(key, "storm:A:1690650000000|raised|2023-07-30T01:00:00+08:00");
}

static void text_that_is_no_alert_or_does_not_fit_is_einval(void **state) {
        char key[256];
        const char *no_ts = "{\"alert_id\":\"a\",\"event\":\"raised\"}";
        const char *cut = "{\"alert_id\":\"a\",\"event\":\"raised\",\"ts\":\"2023";

        assert_int_equal(fh_alert_dedupe_key(no_ts, strlen(no_ts), key, sizeof(key)), -EINVAL);
        assert_int_equal(fh_alert_dedupe_key(cut, strlen(cut), key, sizeof(key)), -EINVAL);
        assert_int_equal(fh_alert_dedupe_key("", 0, key, sizeof(key)), -EINVAL);
        /* Exactly one byte short of the key and its NUL. */
        assert_int_equal(fh_alert_dedupe_key(alert_json, strlen(alert_json), key, 54), -EINVAL);
        assert_int_equal(fh_alert_dedupe_key(alert_json, strlen(alert_json), key, 55), 0);
}

static void the_key_reads_only_within_the_given_length(void **state) {
        char key[256];
        /* The ts value's closing quote lies past len: not an alert. */
        size_t len = strlen(alert_json);
        const char *ts = strstr(alert_json, "\"ts\":\"") + 10;

        assert_int_equal(fh_alert_dedupe_key(alert_json, (size_t) (ts - alert_json), key, sizeof(key)), -EINVAL);
        assert_int_equal(fh_alert_dedupe_key(alert_json, len, key, sizeof(key)), 0);
}

static void set_takes_each_key_once(void **state) {
        fh_strset *s = fh_strset_new();
        char k[32];

        for (int i = 0; i < 1000; i++) {
                snprintf(k, sizeof(k), "key-%d", i);
                fh_strset_add(s, k);
        }
        assert_int_equal(fh_strset_size(s), 1000);
        assert_true(fh_strset_take(s, "key-999"));
        assert_false(fh_strset_take(s, "key-999"));
        assert_false(fh_strset_take(s, "key-1000"));
        assert_int_equal(fh_strset_size(s), 999);
        assert_null(fh_strset_free(s));
        assert_null(fh_strset_free(NULL));
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(dedupe_key_is_alert_id_event_and_ts),
                cmocka_unit_test(text_that_is_no_alert_or_does_not_fit_is_einval),
                cmocka_unit_test(the_key_reads_only_within_the_given_length),
                cmocka_unit_test(set_takes_each_key_once),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
