/* What the engine-level fuzz targets share: a small registry with a
 * station of every kind and the columns the rules read, engines built
 * from rule text, and the checksum the binary formats carry (a target
 * appends it so that the fuzzer explores the decoding, not FNV-1a). */
#ifndef FENGHUO_FUZZ_COMMON_H
#define FENGHUO_FUZZ_COMMON_H

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fenghuo/buf.h"
#include "fenghuo/engine.h"

static const char fuzz_stations_csv[] =
        "id,kind,name,region,warning_level,creep_rate_mm_d,deflection_limit_mm,vibration_limit_mm_s\n"
        "R1,rain,甲,miyun,,,,\n"
        "R2,rain,乙,other,,,,\n"
        "W1,water_level,丙,miyun,150.5,,,\n"
        "L1,landslide,丁,miyun,,0.5,,\n"
        "B1,bridge,戊,miyun,,,40,2.5\n";

/* Rules covering every window function, for/clear_after and age(), for the
 * targets whose input is not the rules themselves. */
static const char fuzz_rules_yaml[] =
        "rules:\n"
        "  - id: storm\n"
        "    kind: rain\n"
        "    levels:\n"
        "      red: sum(rain_mm, 3h) >= 100\n"
        "      orange: sum(rain_mm, 1h) >= 50\n"
        "      blue: avg(rain_mm, 10m) > 1 and count(rain_mm, 10m) >= 2\n"
        "    report: sum(rain_mm, 3h)\n"
        "    for: 5m\n"
        "    clear_after: 30m\n"
        "  - id: level\n"
        "    kind: water_level\n"
        "    levels:\n"
        "      red: max(level_m, 1h) >= station.warning_level\n"
        "      yellow: min(level_m, 30m) > 140 or delta(level_m, 1h) > 2\n"
        "    report: last(level_m)\n"
        "  - id: slide\n"
        "    kind: landslide\n"
        "    levels:\n"
        "      red: rate(displacement_mm, 1d) / station.creep_rate_mm_d >= 20\n"
        "    for: 1h\n"
        "    clear_after: 2h\n"
        "  - id: silent\n"
        "    kind: bridge\n"
        "    levels:\n"
        "      yellow: age() > 600\n"
        "      red: avg(vibration_mm_s, 10m) >= station.vibration_limit_mm_s\n";

/* data followed by its FNV-1a, as the snapshot and state formats end. */
static inline void fuzz_with_checksum(fh_buf *out, const uint8_t *data, size_t size) {
        fh_buf_reset(out);
        fh_buf_append(out, data, size);
        fh_buf_u64(out, fh_checksum(data, size));
}

/* NULL when the rules do not load (the rules target covers why). */
static inline fh_engine *fuzz_engine_new(const char *rules, size_t len, const fh_engine_config *cfg) {
        fh_diags d = FH_DIAGS_NULL;
        fh_ruleset *rs = NULL;
        fh_registry *reg = NULL;
        fh_engine *e = NULL;

        if (fh_ruleset_new(&rs) < 0)
                return NULL;
        if (fh_ruleset_parse(rs, "fuzz.yaml", rules, len, &d) < 0 || fh_ruleset_finish(rs, &d) < 0) {
                fh_ruleset_free(rs);
                fh_diags_clear(&d);
                return NULL;
        }
        if (fh_registry_parse("fuzz.csv", fuzz_stations_csv, strlen(fuzz_stations_csv), &reg, &d) < 0)
                abort();
        if (fh_engine_new(&e, rs, reg, cfg, &d) < 0)
                e = NULL;
        fh_diags_clear(&d);
        return e;
}

#endif
