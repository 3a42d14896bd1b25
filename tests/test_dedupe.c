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
#include "fenghuo/engine.h"

static const char *alert_json =
        "{\"alert_id\":\"storm:A:1690650000000\",\"event\":\"raised\",\"rule\":\"storm\",\"sensor\":\"A\","
        "\"level\":\"orange\",\"previous\":\"none\",\"severity\":2,\"ts\":\"2023-07-30T01:00:00+08:00\","
        "\"value\":63.5,\"title\":\"t\",\"station\":{\"name\":\"n\"},\"message\":\"m\"}";

static void dedupe_key_is_alert_id_event_and_ts(void **state) {
        char key[256];

        assert_int_equal(fh_alert_dedupe_key(alert_json, strlen(alert_json), key, sizeof(key)), 0);
        assert_string_equal(key, "storm:A:1690650000000|raised|1690650000000");
}

/* A restart with another `timezone` writes the same event's ts in another
 * offset: its key, and so its suppression and Redis dedupe, must not change. */
static void the_key_is_the_same_in_any_time_zone(void **state) {
        const char *utc =
                "{\"alert_id\":\"storm:A:1690650000000\",\"event\":\"raised\",\"ts\":\"2023-07-29T17:00:00+00:00\"}";
        char a[256], b[256];

        assert_int_equal(fh_alert_dedupe_key(alert_json, strlen(alert_json), a, sizeof(a)), 0);
        assert_int_equal(fh_alert_dedupe_key(utc, strlen(utc), b, sizeof(b)), 0);
        assert_string_equal(a, b);
}

/* The daemon builds the key from the event (fh_alert_key) and recognises
 * it on the topic from the JSON: both must be the one core function's. */
static void the_key_of_the_json_is_the_key_of_the_event(void **state) {
        char from_json[256], from_parts[256];

        assert_int_equal(fh_alert_dedupe_key(alert_json, strlen(alert_json), from_json, sizeof(from_json)), 0);
        assert_int_equal(fh_alert_key_of("storm:A:1690650000000", 21, "raised", 6, 1690650000000, from_parts,
                                         sizeof(from_parts)), 0);
        assert_string_equal(from_json, from_parts);
}

static void text_that_is_no_alert_or_does_not_fit_is_einval(void **state) {
        char key[256];
        const char *no_ts = "{\"alert_id\":\"a\",\"event\":\"raised\"}";
        const char *cut = "{\"alert_id\":\"a\",\"event\":\"raised\",\"ts\":\"2023";

        assert_int_equal(fh_alert_dedupe_key(no_ts, strlen(no_ts), key, sizeof(key)), -EINVAL);
        assert_int_equal(fh_alert_dedupe_key(cut, strlen(cut), key, sizeof(key)), -EINVAL);
        assert_int_equal(fh_alert_dedupe_key("", 0, key, sizeof(key)), -EINVAL);
        /* Exactly one byte short of the key and its NUL. */
        assert_int_equal(fh_alert_dedupe_key(alert_json, strlen(alert_json), key, 42), -EINVAL);
        assert_int_equal(fh_alert_dedupe_key(alert_json, strlen(alert_json), key, 43), 0);
}

static void the_key_reads_only_within_the_given_length(void **state) {
        char key[256];
        /* The ts value's closing quote lies past len: not an alert. */
        size_t len = strlen(alert_json);
        const char *ts = strstr(alert_json, "\"ts\":\"") + 10;

        assert_int_equal(fh_alert_dedupe_key(alert_json, (size_t) (ts - alert_json), key, sizeof(key)), -EINVAL);
        assert_int_equal(fh_alert_dedupe_key(alert_json, len, key, sizeof(key)), 0);
}

static void a_cap_message_is_known_by_its_identifier(void **state) {
        static const char xml[] = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                                  "<alert xmlns=\"urn:oasis:names:tc:emergency:cap:1.2\">\n"
                                  "  <identifier>11011800000000_20230730000000_42</identifier>\n"
                                  "  <sender>北京市密云区</sender>\n</alert>\n";
        char key[256];

        assert_int_equal(fh_cap_dedupe_key(xml, strlen(xml), key, sizeof(key)), 0);
        assert_string_equal(key, "11011800000000_20230730000000_42");
        /* Never an alert key: the two share one suppression set. */
        assert_int_equal(fh_alert_dedupe_key(xml, strlen(xml), key, sizeof(key)), -EINVAL);
        assert_int_equal(fh_cap_dedupe_key(alert_json, strlen(alert_json), key, sizeof(key)), -EINVAL);
        assert_int_equal(fh_cap_dedupe_key(xml, strlen(xml), key, 10), -EINVAL);
        assert_int_equal(fh_cap_dedupe_key(xml, 60, key, sizeof(key)), -EINVAL);
        assert_int_equal(fh_cap_dedupe_key("", 0, key, sizeof(key)), -EINVAL);
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
                cmocka_unit_test(the_key_is_the_same_in_any_time_zone),
                cmocka_unit_test(the_key_of_the_json_is_the_key_of_the_event),
                cmocka_unit_test(text_that_is_no_alert_or_does_not_fit_is_einval),
                cmocka_unit_test(the_key_reads_only_within_the_given_length),
                cmocka_unit_test(a_cap_message_is_known_by_its_identifier),
                cmocka_unit_test(set_takes_each_key_once),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
