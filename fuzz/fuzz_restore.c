/* libFuzzer target for fh_engine_restore: any bytes as a snapshot (the
 * target appends the checksum, so the fuzzer reaches the decoding).
 *
 * A restore either refuses with -EBADMSG and leaves the engine as it was,
 * or gives an engine that keeps working: readings and ticks after it must
 * not overflow or crash (UBSan), and what it restored must snapshot and
 * restore again. */
#include "fenghuo/reading.h"
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const after[] = {
        "{\"sensor\":\"R1\",\"ts\":\"2023-07-30T08:00:00+08:00\",\"values\":{\"rain_mm\":60}}",
        "{\"sensor\":\"W1\",\"ts\":\"2023-07-30T08:00:00+08:00\",\"values\":{\"level_m\":151}}",
        "{\"sensor\":\"L1\",\"ts\":\"2023-07-30T08:00:00+08:00\",\"values\":{\"displacement_mm\":30}}",
        "{\"sensor\":\"B1\",\"ts\":\"2023-07-30T08:00:00+08:00\",\"values\":{\"vibration_mm_s\":3}}",
        "{\"sensor\":\"R1\",\"ts\":\"2023-07-30T07:59:00+08:00\",\"values\":{\"rain_mm\":60}}",
        "{\"sensor\":\"R2\",\"ts\":\"2023-07-30T09:00:00+08:00\",\"values\":{\"rain_mm\":0.1}}",
        "{\"sensor\":\"B1\",\"ts\":\"9999-12-31T23:59:59Z\",\"values\":{\"vibration_mm_s\":0}}",
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        fh_engine_config cfg = FH_ENGINE_CONFIG_DEFAULT;
        fh_buf in = FH_BUF_NULL, before = FH_BUF_NULL, snap = FH_BUF_NULL;
        fh_engine *e, *e2;
        int r;

        cfg.max_ticks_per_advance = 256;
        e = fuzz_engine_new(fuzz_rules_yaml, strlen(fuzz_rules_yaml), &cfg);
        e2 = fuzz_engine_new(fuzz_rules_yaml, strlen(fuzz_rules_yaml), &cfg);
        if (!e || !e2)
                abort();
        fuzz_with_checksum(&in, data, size);
        fh_engine_snapshot(e, NULL, NULL, &before);
        r = fh_engine_restore(e, in.data, in.len);
        if (r != 0) {
                if (r != -EBADMSG)
                        abort();
                fh_engine_snapshot(e, NULL, NULL, &snap);
                if (snap.len != before.len || memcmp(snap.data, before.data, snap.len) != 0)
                        abort();   /* a refused snapshot changed the engine */
                goto out;
        }

        fh_engine_snapshot(e, NULL, NULL, &snap);
        if (fh_engine_restore(e2, snap.data, snap.len) != 0)
                abort();
        for (size_t i = 0; i < sizeof(after) / sizeof(after[0]); i++) {
                fh_reading rd;
                if (fh_reading_parse(after[i], strlen(after[i]), &rd, NULL, 0) != FH_REJECT_NONE)
                        abort();
                (void) fh_engine_ingest(e, &rd);
                (void) fh_engine_ingest(e2, &rd);
        }
out:
        fh_buf_free(&in);
        fh_buf_free(&before);
        fh_buf_free(&snap);
        fh_engine_free(e);
        fh_engine_free(e2);
        return 0;
}
