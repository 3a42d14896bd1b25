/* The rule engine: readings in, alert events out, time given by the caller.
 *
 * It holds a reference to a model (the rule set and the registry, bound),
 * one window store per (sensor, field) and the alert state of every
 * (rule, sensor) pair of the sensors it has seen. It does no I/O and reads
 * no clock, so `replay`, the daemon and the tests all drive the same code and
 * a replay of history is exactly what the daemon would have done live.
 *
 * Not thread-safe: one engine belongs to one thread at a time; engines
 * sharing one fh_model may run on different threads. */
#ifndef FENGHUO_ENGINE_H
#define FENGHUO_ENGINE_H

#include "fenghuo/common.h"
#include "fenghuo/diag.h"
#include "fenghuo/reading.h"
#include "fenghuo/registry.h"
#include "fenghuo/rules.h"
#include "fenghuo/buf.h"

typedef enum fh_event {
        FH_EVENT_RAISED,
        FH_EVENT_ESCALATED,
        FH_EVENT_DEESCALATED,
        FH_EVENT_CLEARED,
        FH_EVENT__MAX
} fh_event;

const char *fh_event_name(fh_event e);

/* Why an alert was ended by a reload rather than by its readings: the
 * `reason` of such a `cleared` event (docs/integration.md). */
typedef enum fh_end_reason {
        FH_END_NONE,              /* the state machine's own events */
        FH_END_RULE_CHANGED,      /* the rule's definition changed */
        FH_END_RULE_REMOVED,      /* no rule with its id any more */
        FH_END_STATION_REMOVED,   /* the station left the registry */
        FH_END_RULE_UNMATCHED,    /* the rule no longer applies to the station */
        FH_END__MAX
} fh_end_reason;

/* "rule_changed", ...; NULL for FH_END_NONE. */
const char *fh_end_reason_name(fh_end_reason r);

/* One level change of one (rule, sensor) pair (SPEC §4). Pointers are valid
 * for the duration of the callback only. */
typedef struct fh_alert {
        fh_event event;
        const fh_rule *rule;
        const fh_station *station;
        fh_level level;
        fh_level previous;
        int64_t ts_ms;         /* evaluation time */
        int64_t raised_ms;     /* part of alert_id, the same until cleared */
        double value;          /* report value; NaN -> null */
        fh_end_reason reason;  /* FH_END_NONE but on an alert ended by a reload */
        /* The alert's event before this one (event and ts), so that a
         * message can name its predecessor without anyone remembering it
         * (CAP references): has_prior is false on a raise and where the
         * engine does not know it (fh_engine_foreach_active). */
        bool has_prior;
        fh_event prior_event;
        int64_t prior_ts;
} fh_alert;

typedef void (*fh_alert_fn)(void *userdata, const fh_alert *alert);

typedef enum fh_clock_mode {
        /* replay: the clock is the largest accepted timestamp; a reading
         * that moves it runs the tick boundaries first (SPEC §3.2). */
        FH_CLOCK_EVENT,
        /* daemon: the clock only moves through fh_engine_tick(wall time). */
        FH_CLOCK_EXTERNAL,
} fh_clock_mode;

typedef struct fh_engine_config {
        int64_t lateness_ms;       /* default 1h */
        int64_t tick_ms;           /* default 60s */
        int tz_offset_min;         /* offset of alert timestamps, default +480 */
        fh_clock_mode clock;
        /* Upper bound of tick boundaries one clock move evaluates; a jump
         * over more (a gauge stamped in year 9999) evaluates the first and
         * last half of them and counts the rest as skipped, instead of
         * hanging. Default 1,000,000. */
        uint64_t max_ticks_per_advance;
        /* What one sensor can make the engine hold (0: no cap). A reading
         * beyond either cap is rejected, counted, and changes nothing.
         * Readings per sensor in any 60 s of its readings' time (late ones
         * included): bounds the duplicate-detection timestamps and the
         * work per sensor. Default 60, five times what a gauge
         * reporting every 5 s sends. */
        uint32_t max_readings_per_minute;
        /* Samples one window store (sensor, field) holds: bounds memory
         * whatever the windows' lengths. Default 50,000 (800 KB), about
         * three times a 1-day window at one reading every 5 s, the
         * longest of the default rules. */
        uint32_t max_window_samples;
} fh_engine_config;

#define FH_ENGINE_RATE_WINDOW_MS 60000
#define FH_ENGINE_CONFIG_DEFAULT { 3600000, 60000, 480, FH_CLOCK_EVENT, 1000000, 60, 50000 }

/* What happened to one reading. Positive codes, expected outcomes. */
typedef enum fh_outcome {
        FH_OUTCOME_ACCEPTED = 0,
        FH_OUTCOME_LATE,           /* accepted, older than the sensor's latest */
        FH_OUTCOME_DUPLICATE,      /* ignored: timestamp already held */
        FH_OUTCOME_DROPPED,        /* ignored: older than lateness */
        FH_OUTCOME_UNKNOWN_SENSOR, /* rejected */
        FH_OUTCOME_RATE_LIMITED,   /* rejected: max_readings_per_minute */
        FH_OUTCOME_WINDOW_FULL,    /* rejected: max_window_samples */
        FH_OUTCOME__MAX
} fh_outcome;

/* The reason counted for a rejected outcome, FH_REJECT_NONE for the others. */
fh_reject fh_outcome_reject(fh_outcome o);

typedef struct fh_engine_stats {
        uint64_t accepted;         /* includes late */
        uint64_t late;
        uint64_t duplicates;
        uint64_t dropped;
        uint64_t rejected[FH_REJECT__MAX];  /* the engine counts UNKNOWN_SENSOR,
                                               RATE_LIMITED and WINDOW_FULL;
                                               callers add parser rejects with
                                               fh_engine_count_reject() */
        uint64_t events[FH_EVENT__MAX];
        uint64_t evaluations;
        uint64_t ticks_skipped;
} fh_engine_stats;

typedef struct fh_engine fh_engine;

/* A rule set bound to a registry, immutable once built: rules matched to
 * stations, window stores laid out. Engines that share it (a daemon's
 * shards, each over its own partitions' sensors) cost one registry and one
 * binding; an engine holds state only for the sensors it has seen.
 * Reference-counted; the references may be dropped from any thread. */
typedef struct fh_model fh_model;

/* Takes ownership of rules and stations, also on failure. Warnings (a rule
 * that applies to no station, a station column a rule reads that the
 * registry lacks) go to diags. 0 with one reference, -ENOMEM, or -EINVAL
 * with diags. */
int fh_model_new(fh_model **ret, fh_ruleset *rules, fh_registry *stations, fh_diags *diags);
fh_model *fh_model_ref(fh_model *m);
/* Drops a reference (NULL accepted); returns NULL. */
fh_model *fh_model_unref(fh_model *m);
const fh_ruleset *fh_model_rules(const fh_model *m);
const fh_registry *fh_model_registry(const fh_model *m);

/* An engine over m, holding its own reference: the caller keeps its own.
 * Engines of one model may run on different threads. 0 or -EINVAL. */
int fh_engine_new_shared(fh_engine **ret, fh_model *m, const fh_engine_config *cfg);
/* fh_model_new and fh_engine_new_shared in one: takes ownership of rules
 * and stations, also on failure. */
int fh_engine_new(fh_engine **ret, fh_ruleset *rules, fh_registry *stations,
                  const fh_engine_config *cfg, fh_diags *diags);
fh_engine *fh_engine_free(fh_engine *e);
fh_model *fh_engine_model(const fh_engine *e);

/* Alerts are delivered synchronously, from inside ingest/tick, in order. */
void fh_engine_set_alert_cb(fh_engine *e, fh_alert_fn fn, void *userdata);

/* One evaluation of one (rule, sensor) pair, for tools that show how a rule
 * behaved over time (`fenghuo plot`). env evaluates any of the rule's
 * programs (or views of them, fh_program_compares()) exactly as the engine
 * saw them at ts_ms. Valid for the duration of the callback only. */
typedef struct fh_evaluation {
        const fh_rule *rule;
        const fh_station *station;
        int64_t ts_ms;
        fh_level raw;              /* the highest level whose condition holds */
        fh_level level;            /* the pair's level after this evaluation */
        const fh_eval_env *env;
} fh_evaluation;

typedef void (*fh_eval_fn)(void *userdata, const fh_evaluation *ev);

/* Called after every evaluation of every pair, from inside ingest/tick. A
 * cost only when set: the daemon never sets it. */
void fh_engine_set_eval_cb(fh_engine *e, fh_eval_fn fn, void *userdata);

/* Applies one parsed reading. Returns the outcome (never negative). */
fh_outcome fh_engine_ingest(fh_engine *e, const fh_reading *r);
/* The same, with the alerts this reading causes (ticks it runs in
 * FH_CLOCK_EVENT included) given to fn instead of the alert callback: the
 * caller tells them apart by what it passes in userdata, e.g. the message
 * the reading came in. */
fh_outcome fh_engine_ingest_to(fh_engine *e, const fh_reading *r, fh_alert_fn fn, void *userdata);
/* The station of the last reading ingested (NULL if it was unknown). */
const fh_station *fh_engine_last_station(const fh_engine *e);

/* FH_CLOCK_EXTERNAL: evaluates age() rules at every tick boundary in
 * (clock, now_ms] and moves the clock to now_ms. Ignored when now_ms is not
 * ahead of the clock. */
void fh_engine_tick(fh_engine *e, int64_t now_ms);

int64_t fh_engine_clock(const fh_engine *e);   /* FH_TIME_NONE before the first */
/* Moves the clock without evaluating the boundaries passed: a daemon that
 * was down must not judge sensors silent for the time it was not reading. */
void fh_engine_set_clock(fh_engine *e, int64_t now_ms);
void fh_engine_count_reject(fh_engine *e, fh_reject why);
/* One printable line on why the engine rejected r with outcome o, for a
 * log or a dead letter: 'sensor "X" sent more than 60 readings in 60 s
 * (max_readings_per_minute)'. */
void fh_engine_explain(const fh_engine *e, const fh_reading *r, fh_outcome o, char *why, size_t why_len);
const fh_engine_stats *fh_engine_stats_get(const fh_engine *e);
const fh_ruleset *fh_engine_rules(const fh_engine *e);
const fh_registry *fh_engine_registry(const fh_engine *e);
const fh_engine_config *fh_engine_config_get(const fh_engine *e);

/* Stations each rule applies to, for `check`. */
size_t fh_engine_rule_stations(const fh_engine *e, size_t rule_index, const fh_station ***ret);

/* The identity of one alert event, "alert_id|event|ts" with ts in epoch
 * milliseconds: what the daemon recognises on the alerts topic after a
 * crash and what Redis applies only once. Whether built from the event or
 * read back from its JSON, it is the same in any configured time zone.
 * 0, or -ENOSPC when it does not fit n bytes. */
int fh_alert_key(const fh_alert *a, char *buf, size_t n);
int fh_alert_key_of(const char *alert_id, size_t id_len, const char *event, size_t event_len, int64_t ts_ms,
                    char *buf, size_t n);

/* Alert JSON (SPEC §4), one object without newline, appended to out. */
void fh_alert_to_json(const fh_engine *e, const fh_alert *a, fh_buf *out);
/* The rendered message alone (also used inside the JSON). */
void fh_alert_message(const fh_engine *e, const fh_alert *a, fh_buf *out);

/* The threshold an alert of tier `l` crosses: when the tier's condition is
 * one comparison `<quantity> <cmp> <bound>` and the bound depends on the
 * station alone (a number, station.warning_level, 0.8 * station.x), the
 * bound's value for st. `quantity` views the condition's code (never free
 * it): when fh_program_same(&quantity, rule->report), the alert's value is
 * read against the bound in the rule's unit. CAP's `threshold` parameter
 * and the demo's lines show it. Returns false, *ret untouched, otherwise
 * (no such tier, several comparisons, a bound that reads a window). */
typedef struct fh_threshold {
        fh_opcode op;              /* FH_OP_LT ... FH_OP_NE */
        double bound;
        fh_program quantity;
} fh_threshold;
bool fh_rule_threshold(const fh_engine *e, const fh_rule *rule, const fh_station *st, fh_level l,
                       fh_threshold *ret);

/* State snapshots. The state of the sensors for which filter returns true
 * (all when filter is NULL) is appended to out in a versioned binary format:
 * the raw readings in each window, the duplicate-detection horizon, and each
 * (rule, sensor) pair's level, runs and wait, tagged with the rule's hash.
 * Restore accepts a snapshot of an engine with other rules: windows are
 * rebuilt from the raw readings (trimmed to what the new rules need), and
 * pair state is restored only for rules with the same id and hash. Sensors
 * not in the registry are skipped. Returns 0 or -EBADMSG (nothing changed). */
typedef bool (*fh_sensor_filter)(void *userdata, const fh_station *s);
void fh_engine_snapshot(const fh_engine *e, fh_sensor_filter filter, void *userdata, fh_buf *out);
/* One snapshot of the union of n engines' sensors (engines of one model,
 * each sensor in one of them; should one be in several, the one of the
 * last engine wins at restore), with the latest of their clocks: what
 * fh_engine_restore reads, the same format as one engine's. */
void fh_engine_snapshot_many(const fh_engine *const *es, size_t n, fh_sensor_filter filter, void *userdata,
                             fh_buf *out);
int fh_engine_restore(fh_engine *e, const void *data, size_t len);
/* The same, calling fn for each sensor restored. */
typedef void (*fh_station_fn)(void *userdata, const fh_station *s);
int fh_engine_restore_each(fh_engine *e, const void *data, size_t len, fh_station_fn fn, void *userdata);
/* The same, restoring only the sensors for which filter returns true
 * (all when NULL); the others are checked and skipped. The clock is
 * restored all the same. */
int fh_engine_restore_some(fh_engine *e, const void *data, size_t len, fh_sensor_filter filter, void *filter_data,
                           fh_station_fn fn, void *userdata);
/* Forget the state of the filtered sensors (partition revoked). */
void fh_engine_forget(fh_engine *e, fh_sensor_filter filter, void *userdata);

/* Bytes of state held for sensors (windows, pairs), for benchmarks and
 * metrics. */
size_t fh_engine_memory(const fh_engine *e);
/* Samples held in the sensors' window stores (what fh_engine_memory grows
 * with), for the same benchmarks. */
size_t fh_engine_samples(const fh_engine *e);

/* A reload: every alert active in old whose pair does not carry over into
 * ne (carried over means the same rule id with the same hash applying to
 * the same station id, which fh_engine_restore keeps) is ended with a
 * `cleared` event through old's alert callback, in rule then sensor order,
 * with value null, its reason, and ts = now_ms (never before the pair's
 * last event). Those pairs of old are reset. Call it before old is freed
 * and after ne is complete; neither engine's windows change. */
void fh_engine_end_orphans(fh_engine *old, const fh_engine *ne, int64_t now_ms);

/* Active alerts now, for operator views: calls fn for each pair whose level
 * is not none, in rule then sensor order. */
void fh_engine_foreach_active(const fh_engine *e, fh_alert_fn fn, void *userdata);

#endif
