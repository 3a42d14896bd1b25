/* libFuzzer target: an engine built from fuzzed rules, fed fuzzed readings.
 *
 * Input: rule YAML, a line "@@", then readings as JSON Lines (the fixed
 * registry of fuzz_common.h: R1 R2 rain, W1 water_level, L1 landslide, B1
 * bridge). A line "@snap" moves the state through a snapshot into a fresh
 * engine with the same rules, as a reload or restart does.
 *
 * Beyond "never crashes, hangs or leaks": every alert is a legal transition
 * of SPEC §3.2 and renders; a snapshot the engine wrote always restores,
 * and the restored engine writes the same snapshot again. */
#include <math.h>
#include <stdio.h>

#include "fenghuo/reading.h"
#include "fenghuo/timeutil.h"
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const fh_engine_config fuzz_cfg = {
        .lateness_ms = 3600000,
        .tick_ms = 60000,
        .tz_offset_min = 480,
        .clock = FH_CLOCK_EVENT,
        /* A reading years ahead must cost little: what bounds it is tested
         * here, not the default. */
        .max_ticks_per_advance = 256,
        /* Small caps, so that inputs reach them. */
        .max_readings_per_minute = 8,
        .max_window_samples = 16,
};

typedef struct ctx {
        fh_engine *e;
        fh_buf json;
} ctx;

static void on_alert(void *userdata, const fh_alert *a) {
        ctx *c = userdata;

        if (a->level == a->previous || a->level >= FH_LEVEL__MAX || a->previous >= FH_LEVEL__MAX)
                abort();
        switch (a->event) {
        case FH_EVENT_RAISED:
                if (a->previous != FH_LEVEL_NONE || a->raised_ms != a->ts_ms)
                        abort();
                break;
        case FH_EVENT_CLEARED:
                if (a->level != FH_LEVEL_NONE)
                        abort();
                break;
        case FH_EVENT_ESCALATED:
                if (a->level < a->previous)
                        abort();
                break;
        case FH_EVENT_DEESCALATED:
                if (a->level > a->previous || a->level == FH_LEVEL_NONE)
                        abort();
                break;
        default:
                abort();
        }
        /* Not raised_ms <= ts_ms: SPEC §3.2 evaluates a reading at its
         * sensor's latest timestamp, which can be earlier than the tick
         * that raised an age() alert, so a clear can be stamped earlier. */
        if (a->ts_ms < FH_TIME_MIN_MS || a->ts_ms > FH_TIME_MAX_MS || a->raised_ms < FH_TIME_MIN_MS ||
            a->raised_ms > FH_TIME_MAX_MS)
                abort();
        fh_buf_reset(&c->json);
        fh_alert_to_json(c->e, a, &c->json);
        if (c->json.len == 0 || memchr(c->json.data, '\n', c->json.len))
                abort();
}

/* The state moves into a new engine built from the same rules. */
static fh_engine *move_state(ctx *c, const char *rules, size_t rules_len) {
        fh_buf snap = FH_BUF_NULL, again = FH_BUF_NULL;
        fh_engine *n = fuzz_engine_new(rules, rules_len, &fuzz_cfg);

        if (!n)
                abort();   /* the same rules loaded a moment ago */
        fh_engine_snapshot(c->e, NULL, NULL, &snap);
        if (fh_engine_restore(n, snap.data, snap.len) != 0)
                abort();
        fh_engine_snapshot(n, NULL, NULL, &again);
        if (again.len != snap.len || memcmp(again.data, snap.data, snap.len) != 0)
                abort();
        fh_buf_free(&snap);
        fh_buf_free(&again);
        fh_engine_free(c->e);
        c->e = n;
        fh_engine_set_alert_cb(n, on_alert, c);
        return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        static const char sep[] = "\n@@\n";
        const char *text = (const char *) data;
        const char *split = memmem(text, size, sep, sizeof(sep) - 1);
        ctx c = { .json = FH_BUF_NULL };

        if (!split)
                return 0;
        size_t rules_len = (size_t) (split - text) + 1;
        c.e = fuzz_engine_new(text, rules_len, &fuzz_cfg);
        if (!c.e)
                return 0;
        fh_engine_set_alert_cb(c.e, on_alert, &c);

        const char *p = split + sizeof(sep) - 1, *end = text + size;
        while (p < end) {
                const char *nl = memchr(p, '\n', (size_t) (end - p));
                size_t len = nl ? (size_t) (nl - p) : (size_t) (end - p);
                fh_reading r;

                if (len == 5 && memcmp(p, "@snap", 5) == 0)
                        move_state(&c, text, rules_len);
                else if (fh_reading_parse(p, len, &r, NULL, 0) == FH_REJECT_NONE) {
                        fh_outcome o = fh_engine_ingest(c.e, &r);
                        if ((unsigned) o >= FH_OUTCOME__MAX)
                                abort();
                }
                p += len + 1;
        }
        move_state(&c, text, rules_len);

        const fh_engine_stats *st = fh_engine_stats_get(c.e);
        if (st->late > st->accepted)
                abort();
        fh_engine_free(c.e);
        fh_buf_free(&c.json);
        return 0;
}
