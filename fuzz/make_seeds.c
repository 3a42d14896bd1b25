/* Writes the seed corpora of the binary-format targets (restore, state,
 * handoff) from real engine state, without the trailing checksum the
 * targets append themselves:  build-fuzz/fuzz/make_seeds fuzz/corpus
 * Re-run it when a format changes. */
#include <errno.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fenghuo/reading.h"
#include "fuzz_common.h"
#include "handoff_record.h"
#include "state.h"

static const char *const readings[] = {
        "{\"sensor\":\"R1\",\"ts\":\"2023-07-30T06:00:00+08:00\",\"values\":{\"rain_mm\":20.5}}",
        "{\"sensor\":\"R1\",\"ts\":\"2023-07-30T06:30:00+08:00\",\"values\":{\"rain_mm\":30.1}}",
        "{\"sensor\":\"R1\",\"ts\":\"2023-07-30T06:20:00+08:00\",\"values\":{\"rain_mm\":4}}",
        "{\"sensor\":\"R1\",\"ts\":\"2023-07-30T06:40:00+08:00\",\"values\":{\"rain_mm\":55}}",
        "{\"sensor\":\"R2\",\"ts\":\"2023-07-30T06:00:00+08:00\",\"values\":{\"rain_mm\":1}}",
        "{\"sensor\":\"W1\",\"ts\":\"2023-07-30T06:00:00+08:00\",\"values\":{\"level_m\":149.2}}",
        "{\"sensor\":\"W1\",\"ts\":\"2023-07-30T06:10:00+08:00\",\"values\":{\"level_m\":151.25}}",
        "{\"sensor\":\"L1\",\"ts\":\"2023-07-29T06:00:00+08:00\",\"values\":{\"displacement_mm\":3}}",
        "{\"sensor\":\"L1\",\"ts\":\"2023-07-30T06:00:00+08:00\",\"values\":{\"displacement_mm\":40}}",
        "{\"sensor\":\"B1\",\"ts\":\"2023-07-30T06:00:00+08:00\",\"values\":{\"vibration_mm_s\":3.5}}",
        "{\"sensor\":\"B1\",\"ts\":\"2023-07-30T07:00:00+08:00\",\"values\":{\"vibration_mm_s\":0.2}}",
};

static void write_seed(const char *dir, const char *sub, const char *name, const void *p, size_t n) {
        char path[512];
        FILE *f;

        snprintf(path, sizeof(path), "%s/%s", dir, sub);
        mkdir(path, 0755);
        snprintf(path, sizeof(path), "%s/%s/%s", dir, sub, name);
        f = fopen(path, "wb");
        if (!f || fwrite(p, 1, n, f) != n || fclose(f) != 0) {
                perror(path);
                exit(1);
        }
}

/* Engine state after the first n readings. */
static fh_engine *engine_after(size_t n) {
        fh_engine *e = fuzz_engine_new(fuzz_rules_yaml, strlen(fuzz_rules_yaml), NULL);
        for (size_t i = 0; i < n; i++) {
                fh_reading r;
                if (fh_reading_parse(readings[i], strlen(readings[i]), &r, NULL, 0) != FH_REJECT_NONE)
                        abort();
                fh_engine_ingest(e, &r);
        }
        return e;
}

int main(int argc, char **argv) {
        const size_t steps[] = { 0, 1, 4, sizeof(readings) / sizeof(readings[0]) };
        const char *dir = argc > 1 ? argv[1] : "fuzz/corpus";
        char name[64];

        for (size_t k = 0; k < sizeof(steps) / sizeof(steps[0]); k++) {
                fh_engine *e = engine_after(steps[k]);
                fh_buf snap = FH_BUF_NULL, rec = FH_BUF_NULL;
                fh_offsets wm = { 0 };
                fh_checkpoint cp = { 0 };
                char tmpl[] = "/tmp/fh-seeds-XXXXXX";

                fh_engine_snapshot(e, NULL, NULL, &snap);
                snprintf(name, sizeof(name), "snap-%zu", steps[k]);
                write_seed(dir, "restore", name, snap.data, snap.len - 8);

                if (k > 0)
                        fh_offsets_add(&wm, "fenghuo.alerts", 0, (int64_t) (17 * k));
                if (k > 1)
                        fh_offsets_add(&wm, "fenghuo.alerts", 3, 5);
                fh_handoff_encode(&rec, (int64_t) (1000 * k), &wm, snap.data, snap.len);
                snprintf(name, sizeof(name), "record-%zu", steps[k]);
                write_seed(dir, "handoff", name, rec.data, rec.len);

                /* A state file with offsets, an outbox of each kind and the
                 * sensor-to-partition map. */
                fh_offsets_add(&cp.positions, "readings", 0, (int64_t) (100 * k));
                if (k > 0) {
                        fh_offsets_add(&cp.positions, "readings", 1, 7);
                        cp.watermarks = wm;
                        wm = (fh_offsets) { 0 };
                        fh_offsets_add(&cp.partitions, "readings", 1, 0);
                        cp.n_sensors = 1;
                        cp.sensor_ids = fh_calloc(1, sizeof(char *));
                        cp.sensor_part = fh_calloc(1, sizeof(uint32_t));
                        cp.sensor_ids[0] = fh_strdup("R1");
                }
                if (k > 1) {
                        cp.n_outbox = 2;
                        cp.outbox = fh_calloc(2, sizeof(*cp.outbox));
                        cp.outbox[0] = (fh_outbox_item) { .sinks = 3, .p = fh_payload_new(&(fh_payload_parts) {
                                .kind = FH_OUT_ALERT, .key = "R1", .key_len = SIZE_MAX,
                                .value = "{\"event\":\"raised\"}", .value_len = SIZE_MAX,
                                .field = "storm:R1", .field_len = SIZE_MAX, .level = "red", .level_len = SIZE_MAX,
                                .dedupe = "storm|R1|raised|1", .dedupe_len = SIZE_MAX,
                                .src_topic = "readings", .src_topic_len = SIZE_MAX, .src_offset = 9 }) };
                        cp.outbox[1] = (fh_outbox_item) { .sinks = 1, .p = fh_payload_new(&(fh_payload_parts) {
                                .kind = FH_OUT_DEAD_LETTER, .value = "{bad", .value_len = SIZE_MAX,
                                .reason = "malformed_json", .reason_len = SIZE_MAX,
                                .detail = "unexpected end", .detail_len = SIZE_MAX,
                                .src_topic = "readings", .src_topic_len = SIZE_MAX,
                                .src_partition = 1, .src_offset = 3 }) };
                }
                if (!mkdtemp(tmpl) || fh_state_save(tmpl, (const fh_engine *const *) &e, 1, &cp) != 0)
                        abort();
                char path[600];
                snprintf(path, sizeof(path), "%s/state", tmpl);
                FILE *f = fopen(path, "rb");
                fh_buf file = FH_BUF_NULL;
                char chunk[4096];
                size_t got;
                while (f && (got = fread(chunk, 1, sizeof(chunk), f)) > 0)
                        fh_buf_append(&file, chunk, got);
                if (!f || file.len < 8)
                        abort();
                fclose(f);
                unlink(path);
                rmdir(tmpl);
                snprintf(name, sizeof(name), "state-%zu", steps[k]);
                write_seed(dir, "state", name, file.data, file.len - 8);

                fh_buf_free(&file);
                fh_checkpoint_clear(&cp);
                fh_offsets_clear(&wm);
                fh_buf_free(&snap);
                fh_buf_free(&rec);
                fh_engine_free(e);
        }
        return 0;
}
