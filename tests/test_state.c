/* The daemon's state file (src/daemon/state.c): what a restart continues
 * from. A round trip keeps offsets, outbox and engine state; a damaged file
 * is refused without touching the engine. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>
#include <cmocka.h>

#include "state.h"

#define T0 1690646400000LL

static const char *rules_yaml =
        "rules:\n  - id: storm\n    kind: rain\n    levels:\n      blue: sum(rain_mm, 1h) >= 10\n";
static const char *stations_csv = "id,kind,name\nA,rain,甲\nB,rain,乙\n";

static int n_alerts;

static void count(void *ud, const fh_alert *a) {
        n_alerts++;
}

static fh_engine *engine(void) {
        fh_diags d = FH_DIAGS_NULL;
        fh_ruleset *rs;
        fh_registry *reg;
        fh_engine *e;

        assert_int_equal(fh_ruleset_new(&rs), 0);
        assert_int_equal(fh_ruleset_parse(rs, "t.yaml", rules_yaml, strlen(rules_yaml), &d), 0);
        assert_int_equal(fh_ruleset_finish(rs, &d), 0);
        assert_int_equal(fh_registry_parse("s.csv", stations_csv, strlen(stations_csv), &reg, &d), 0);
        assert_int_equal(fh_engine_new(&e, rs, reg, NULL, &d), 0);
        fh_diags_clear(&d);
        fh_engine_set_alert_cb(e, count, NULL);
        return e;
}

static void feed(fh_engine *e, const char *sensor, int minute, double mm) {
        fh_reading r = { 0 };

        snprintf(r.sensor, sizeof(r.sensor), "%s", sensor);
        r.sensor_len = (uint8_t) strlen(sensor);
        r.ts_ms = T0 + minute * 60000LL;
        r.n_values = 1;
        snprintf(r.values[0].name, sizeof(r.values[0].name), "rain_mm");
        r.values[0].name_len = 7;
        r.values[0].v = mm;
        fh_engine_ingest(e, &r);
}

static char *tmpdir(void) {
        char tmpl[] = "/tmp/fenghuo-test-state-XXXXXX";
        assert_non_null(mkdtemp(tmpl));
        return strdup(tmpl);
}

static void rmdir_all(char *dir) {
        char p[512];
        snprintf(p, sizeof(p), "%s/state", dir);
        unlink(p);
        snprintf(p, sizeof(p), "%s/state.tmp", dir);
        unlink(p);
        rmdir(dir);
        free(dir);
}

static fh_checkpoint sample_checkpoint(void) {
        fh_checkpoint c = { 0 };

        fh_offsets_add(&c.positions, "rain", 0, 42);
        fh_offsets_add(&c.positions, "rain", 1, 7);
        fh_offsets_add(&c.watermarks, "alerts", 0, 99);
        fh_offsets_add(&c.partitions, "rain", 0, 0);
        c.outbox = calloc(1, sizeof(*c.outbox));
        c.outbox[0] = (fh_outbox_item) {
                .sinks = FH_SINK_KAFKA | FH_SINK_REDIS,
                .p = fh_payload_new(&(fh_payload_parts) {
                        .kind = FH_OUT_ALERT, .key = "A", .key_len = 1, .value = "{\"x\":1}", .value_len = 7,
                        .field = "storm:A", .field_len = SIZE_MAX, .level = "blue", .level_len = SIZE_MAX,
                        .dedupe = "id|raised|ts", .dedupe_len = SIZE_MAX, .src_topic = "rain",
                        .src_topic_len = SIZE_MAX, .src_partition = 0, .src_offset = 41 }),
        };
        c.n_outbox = 1;
        c.sensor_ids = calloc(1, sizeof(char *));
        c.sensor_ids[0] = strdup("A");
        c.sensor_part = calloc(1, sizeof(uint32_t));
        c.n_sensors = 1;
        return c;
}

/* A CAP message waiting for its file (or its topic) survives a crash. */
static void a_cap_message_in_the_outbox_is_saved_with_its_sinks(void **state) {
        char *dir = tmpdir();
        fh_engine *e = engine(), *e2 = engine();
        fh_checkpoint c = sample_checkpoint(), got = { 0 };

        fh_outbox_item_clear(&c.outbox[0]);
        c.outbox[0] = (fh_outbox_item) {
                .sinks = FH_SINK_KAFKA | FH_SINK_FILE,
                .p = fh_payload_new(&(fh_payload_parts) {
                        .kind = FH_OUT_CAP, .key = "A", .key_len = 1, .value = "<alert/>", .value_len = 8,
                        .dedupe = "11011800000000_20230730000000_1", .dedupe_len = SIZE_MAX }),
        };
        assert_int_equal(fh_state_save(dir, (const fh_engine *[]) { e }, 1, &c), 0);
        assert_int_equal(fh_state_load(dir, e2, &got), 0);
        assert_int_equal(got.n_outbox, 1);
        assert_int_equal(got.outbox[0].p->kind, FH_OUT_CAP);
        assert_int_equal(got.outbox[0].sinks, FH_SINK_KAFKA | FH_SINK_FILE);
        assert_string_equal(got.outbox[0].p->value, "<alert/>");
        assert_string_equal(got.outbox[0].p->dedupe, "11011800000000_20230730000000_1");
        fh_checkpoint_clear(&got);
        fh_checkpoint_clear(&c);
        fh_engine_free(e);
        fh_engine_free(e2);
        rmdir_all(dir);
}

static void offsets_add_replaces_the_same_partition(void **state) {
        fh_offsets o = { 0 };

        fh_offsets_add(&o, "rain", 0, 1);
        fh_offsets_add(&o, "rain", 1, 5);
        fh_offsets_add(&o, "rain", 0, 3);
        assert_int_equal(o.n, 2);
        assert_int_equal(fh_offsets_get(&o, "rain", 0), 3);
        assert_int_equal(fh_offsets_get(&o, "rain", 1), 5);
        assert_int_equal(fh_offsets_get(&o, "bridge", 0), -1);
        fh_offsets_clear(&o);
        assert_int_equal(o.n, 0);
}

static void save_then_load_continues_exactly_where_it_stopped(void **state) {
        char *dir = tmpdir();
        fh_engine *e = engine(), *e2 = engine();
        fh_checkpoint c = sample_checkpoint(), got = { 0 };

        feed(e, "A", 0, 6);
        assert_int_equal(fh_state_save(dir, (const fh_engine *[]) { e }, 1, &c), 0);
        assert_int_equal(fh_state_load(dir, e2, &got), 0);
        assert_int_equal(fh_offsets_get(&got.positions, "rain", 0), 42);
        assert_int_equal(fh_offsets_get(&got.positions, "rain", 1), 7);
        assert_int_equal(fh_offsets_get(&got.watermarks, "alerts", 0), 99);
        assert_int_equal(got.n_outbox, 1);
        assert_int_equal(got.outbox[0].p->kind, FH_OUT_ALERT);
        assert_int_equal(got.outbox[0].sinks, FH_SINK_KAFKA | FH_SINK_REDIS);
        assert_string_equal(got.outbox[0].p->value, "{\"x\":1}");
        assert_int_equal(got.outbox[0].p->value_len, 7);
        assert_string_equal(got.outbox[0].p->field, "storm:A");
        assert_int_equal(got.outbox[0].p->field_len, 7);
        assert_string_equal(got.outbox[0].p->dedupe, "id|raised|ts");
        assert_null(got.outbox[0].p->reason);
        assert_int_equal(got.outbox[0].p->src_offset, 41);
        assert_int_equal(got.n_sensors, 1);
        assert_string_equal(got.sensor_ids[0], "A");

        /* The restored window holds the 6 mm: 4 more raise the alert. */
        n_alerts = 0;
        feed(e2, "A", 10, 4);
        assert_int_equal(n_alerts, 1);
        fh_checkpoint_clear(&got);
        fh_checkpoint_clear(&c);
        fh_engine_free(e);
        fh_engine_free(e2);
        rmdir_all(dir);
}

static void missing_state_is_enoent(void **state) {
        char *dir = tmpdir();
        fh_engine *e = engine();
        fh_checkpoint got = { 0 };

        assert_int_equal(fh_state_load(dir, e, &got), -ENOENT);
        fh_engine_free(e);
        rmdir_all(dir);
}

static void damaged_state_is_refused_and_the_engine_untouched(void **state) {
        char *dir = tmpdir(), path[512];
        fh_engine *e = engine(), *e2 = engine();
        fh_checkpoint c = sample_checkpoint(), got = { 0 };

        feed(e, "A", 0, 6);
        assert_int_equal(fh_state_save(dir, (const fh_engine *[]) { e }, 1, &c), 0);
        snprintf(path, sizeof(path), "%s/state", dir);
        int fd = open(path, O_RDWR);
        assert_true(fd >= 0);
        off_t size = lseek(fd, 0, SEEK_END);
        for (off_t at = 0; at < size; at += 7) {
                char ch, flipped;
                assert_int_equal(pread(fd, &ch, 1, at), 1);
                flipped = (char) (ch ^ 0x20);
                assert_int_equal(pwrite(fd, &flipped, 1, at), 1);
                assert_int_equal(fh_state_load(dir, e2, &got), -EBADMSG);
                assert_int_equal(pwrite(fd, &ch, 1, at), 1);
        }
        assert_int_equal(ftruncate(fd, size / 2), 0);
        assert_int_equal(fh_state_load(dir, e2, &got), -EBADMSG);
        close(fd);

        /* Nothing was restored: 4 mm alone raise nothing. */
        n_alerts = 0;
        feed(e2, "A", 10, 4);
        assert_int_equal(n_alerts, 0);
        fh_checkpoint_clear(&c);
        fh_engine_free(e);
        fh_engine_free(e2);
        rmdir_all(dir);
}

static void save_to_a_missing_directory_fails_with_errno(void **state) {
        fh_engine *e = engine();
        fh_checkpoint c = { 0 };

        assert_int_equal(fh_state_save("/nonexistent/fenghuo", (const fh_engine *[]) { e }, 1, &c), -ENOENT);
        fh_engine_free(e);
}

/* Counts that the bytes after them cannot hold are refused before anything
 * is allocated for them (fuzz/fuzz_state.c: an outbox of 80 million items
 * was a 3.7 GB calloc). Under a 1 GB address-space limit that aborted. */
static void counts_beyond_the_file_are_refused_without_allocating(void **state) {
        fh_engine *e = engine();
        fh_checkpoint c = { 0 };
        fh_buf b = FH_BUF_NULL;
#ifndef __SANITIZE_ADDRESS__
        struct rlimit old, lim;
        assert_int_equal(getrlimit(RLIMIT_AS, &old), 0);
        lim = (struct rlimit) { 1UL << 30, old.rlim_max };
        assert_int_equal(setrlimit(RLIMIT_AS, &lim), 0);
#endif
        /* An offsets list, the outbox, the sensors: each count in turn. */
        for (int which = 0; which < 3; which++) {
                fh_buf_reset(&b);
                fh_buf_append(&b, "FHSTATE2", 8);
                fh_buf_u32(&b, which == 0 ? 900000 : 0);        /* positions */
                fh_buf_u32(&b, 0);                              /* watermarks */
                fh_buf_u32(&b, which == 1 ? 80000000 : 0);      /* outbox */
                fh_buf_u32(&b, 0);                              /* partitions */
                fh_buf_u32(&b, which == 2 ? 90000000 : 0);      /* sensors */
                fh_buf_u64(&b, 0);                              /* snapshot length */
                fh_buf_u64(&b, fh_checksum(b.data, b.len));
                assert_int_equal(fh_state_decode(b.data, b.len, e, &c), -EBADMSG);
                assert_null(c.outbox);
                assert_null(c.sensor_ids);
        }
#ifndef __SANITIZE_ADDRESS__
        assert_int_equal(setrlimit(RLIMIT_AS, &old), 0);
#endif
        fh_buf_free(&b);
        fh_engine_free(e);
}

static void put_str(fh_buf *b, const char *s, size_t n) {
        if (!s) {
                fh_buf_u32(b, UINT32_MAX);
                return;
        }
        fh_buf_str(b, s, n);
}

/* The outbox as the daemon wrote it before alerts shared one payload
 * (each item's strings on their own), written here field by field: a
 * state file of that version still loads, a dead letter's key and bytes
 * with a NUL inside them included. */
static void a_state_file_of_the_previous_version_loads(void **state) {
        fh_engine *e = engine(), *e2 = engine();
        fh_checkpoint got = { 0 };
        fh_buf b = FH_BUF_NULL;

        feed(e, "A", 0, 6);
        fh_buf_append(&b, "FHSTATE2", 8);
        fh_buf_u32(&b, 1);                                        /* positions */
        fh_buf_str(&b, "rain", 4);
        fh_buf_u32(&b, 0);
        fh_buf_u64(&b, 42);
        fh_buf_u32(&b, 0);                                        /* watermarks */
        fh_buf_u32(&b, 2);                                        /* outbox */
        fh_buf_u8(&b, FH_OUT_ALERT);
        fh_buf_u8(&b, FH_SINK_REDIS);
        fh_buf_u8(&b, 1);                                         /* cleared */
        put_str(&b, "A", 1);
        put_str(&b, "{\"event\":\"cleared\"}", 19);
        put_str(&b, "storm:A", 7);
        put_str(&b, "none", 4);
        put_str(&b, "storm:A:1|cleared|2", 19);
        put_str(&b, NULL, 0);
        put_str(&b, NULL, 0);
        put_str(&b, NULL, 0);
        fh_buf_u32(&b, 0);
        fh_buf_u64(&b, 0);
        fh_buf_u8(&b, FH_OUT_DEAD_LETTER);
        fh_buf_u8(&b, FH_SINK_KAFKA);
        fh_buf_u8(&b, 0);
        put_str(&b, "k\0y", 3);
        put_str(&b, "no\0json", 7);
        put_str(&b, NULL, 0);
        put_str(&b, NULL, 0);
        put_str(&b, NULL, 0);
        put_str(&b, "malformed_json", 14);
        put_str(&b, "expected '{'", 12);
        put_str(&b, "rain", 4);
        fh_buf_u32(&b, 3);
        fh_buf_u64(&b, 17);
        fh_buf_u32(&b, 1);                                        /* partitions */
        fh_buf_str(&b, "rain", 4);
        fh_buf_u32(&b, 0);
        fh_buf_u64(&b, 1);
        fh_buf_u32(&b, 1);                                        /* sensors */
        fh_buf_str(&b, "A", 1);
        fh_buf_u32(&b, 0);
        size_t at = b.len;
        fh_buf_u64(&b, 0);
        fh_engine_snapshot(e, NULL, NULL, &b);
        uint64_t snap_len = b.len - at - 8;
        for (int i = 0; i < 8; i++)
                b.data[at + i] = (char) (snap_len >> (8 * i));
        fh_buf_u64(&b, fh_checksum(b.data, b.len));

        assert_int_equal(fh_state_decode(b.data, b.len, e2, &got), 0);
        assert_int_equal(got.n_outbox, 2);
        const fh_payload *a = got.outbox[0].p, *dl = got.outbox[1].p;
        assert_int_equal(got.outbox[0].sinks, FH_SINK_REDIS);
        assert_int_equal(a->kind, FH_OUT_ALERT);
        assert_true(a->cleared);
        assert_int_equal(a->key_len, 1);
        assert_string_equal(a->value, "{\"event\":\"cleared\"}");
        assert_string_equal(a->field, "storm:A");
        assert_string_equal(a->level, "none");
        assert_string_equal(a->dedupe, "storm:A:1|cleared|2");
        assert_null(a->reason);
        assert_int_equal(got.outbox[1].sinks, FH_SINK_KAFKA);
        assert_int_equal(dl->kind, FH_OUT_DEAD_LETTER);
        assert_int_equal(dl->key_len, 3);
        assert_memory_equal(dl->key, "k\0y", 3);
        assert_int_equal(dl->value_len, 7);
        assert_memory_equal(dl->value, "no\0json", 7);
        assert_null(dl->field);
        assert_null(dl->dedupe);
        assert_string_equal(dl->reason, "malformed_json");
        assert_string_equal(dl->detail, "expected '{'");
        assert_string_equal(dl->src_topic, "rain");
        assert_int_equal(dl->src_partition, 3);
        assert_int_equal(dl->src_offset, 17);

        /* And is written back byte for byte the same. */
        char *dir = tmpdir(), path[512];
        assert_int_equal(fh_state_save(dir, (const fh_engine *[]) { e2 }, 1, &got), 0);
        snprintf(path, sizeof(path), "%s/state", dir);
        FILE *f = fopen(path, "rb");
        assert_non_null(f);
        char *back = malloc(b.len + 1);
        assert_int_equal(fread(back, 1, b.len + 1, f), b.len);
        fclose(f);
        assert_memory_equal(back, b.data, b.len);
        free(back);
        rmdir_all(dir);

        fh_checkpoint_clear(&got);
        fh_buf_free(&b);
        fh_engine_free(e);
        fh_engine_free(e2);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(offsets_add_replaces_the_same_partition),
                cmocka_unit_test(a_cap_message_in_the_outbox_is_saved_with_its_sinks),
                cmocka_unit_test(save_then_load_continues_exactly_where_it_stopped),
                cmocka_unit_test(missing_state_is_enoent),
                cmocka_unit_test(damaged_state_is_refused_and_the_engine_untouched),
                cmocka_unit_test(save_to_a_missing_directory_fails_with_errno),
                cmocka_unit_test(counts_beyond_the_file_are_refused_without_allocating),
                cmocka_unit_test(a_state_file_of_the_previous_version_loads),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
