/* Engine internals shared by engine.c and snapshot.c. */
#ifndef FENGHUO_ENGINE_INTERNAL_H
#define FENGHUO_ENGINE_INTERNAL_H

#include "fenghuo/engine.h"
#include "window.h"

typedef struct fh_store_layout {
        uint16_t field;
        const char *name;
        size_t name_len;
        uint16_t n_win;            /* <= the rule set's 4096 windows */
        int64_t *win_ms;
        uint8_t *needs;
} fh_store_layout;

/* The layout of every sensor that the same rules apply to: which fields it
 * keeps, which window lengths each field needs, and where an expression's
 * (field, window) lands. Shared, so 100,000 gauges cost one layout. */
typedef struct fh_profile {
        uint32_t *rules;             /* rule indices, ascending = id order */
        uint32_t n_rules;
        fh_store_layout *stores;
        uint32_t n_stores;
        int16_t *store_of_field;     /* [syms.n_fields] -> store or -1 */
        int16_t *win_of_window;      /* [syms.n_windows] -> window within its store or -1 */
        uint64_t hash;
} fh_profile;

/* Per (rule, sensor): the alert state machine of SPEC §3.2. */
typedef struct fh_pair {
        uint8_t level;
        int64_t run[FH_LEVEL__MAX];  /* since when each level's condition held */
        int64_t wait;                /* since when the target has been below */
        int64_t raised;              /* alert_id time, FH_TIME_NONE when none */
        /* The last event, so the alerts active now can be told exactly as
         * they were last published (an operator's view, a resync). */
        uint8_t last_event;
        uint8_t last_previous;
        int64_t last_ts;
        double last_value;
} fh_pair;

/* Timestamps as 32 bits after base (moved forward when one would not fit;
 * with a lateness over 2^31 ms, hi keeps 32 more bits each). */
typedef struct fh_recent {
        uint32_t *v;                 /* sorted ring: cap is a power of two */
        uint32_t *hi;                /* NULL unless wide */
        int64_t base;
        size_t off, len, cap;        /* off: slot of the oldest */
} fh_recent;

typedef struct fh_sensor {
        const fh_station *st;
        const fh_profile *prof;
        int64_t latest;              /* FH_TIME_NONE before the first reading */
        fh_recent recent;            /* accepted timestamps within lateness */
        fh_store *stores;            /* prof->n_stores */
        fh_pair *pairs;              /* prof->n_rules */
} fh_sensor;

typedef struct fh_rule_bind {
        uint32_t *sensor;            /* sensor indices, ascending = id order */
        uint32_t *pair;              /* index of the rule within that sensor's pairs */
        size_t n, cap;
} fh_rule_bind;

/* What engines running the same rules over the same registry share, built
 * once and never changed after: N shards of a daemon cost one registry,
 * one binding and one set of profiles. Freed with its last reference,
 * which any thread may drop. */
struct fh_model {
        size_t refs;                 /* __atomic */
        fh_ruleset *rs;
        fh_registry *reg;
        const fh_profile **prof_of;  /* per station index */
        fh_rule_bind *bind;          /* one per rule */
        uint32_t *age_rules;
        size_t n_age_rules;
        int *attr_col;               /* syms.attrs -> registry column or -1 */

        fh_profile **profiles;
        size_t n_profiles;
        fh_profile **profile_slots;
        size_t profile_mask;
};

struct fh_engine {
        fh_engine_config cfg;
        fh_model *m;
        /* Borrowed from m, for the hot paths. */
        const fh_ruleset *rs;
        const fh_registry *reg;
        const fh_rule_bind *bind;
        const uint32_t *age_rules;
        size_t n_age_rules;
        const int *attr_col;

        fh_alert_fn alert_cb;
        void *alert_data;
        fh_eval_fn eval_cb;
        void *eval_data;
        fh_engine_stats stats;
        int64_t clock;
        const fh_station *last_station;

        /* One per station index, allocated with the sensor's first reading
         * or restore: an engine that sees a few partitions' sensors holds
         * state for those alone. NULL: no state. */
        fh_sensor **sensors;
        size_t n_live;
};

/* The state of station index i, allocated when missing. */
fh_sensor *fh_engine_sensor(fh_engine *e, size_t i);
/* Frees it (forgotten). */
void fh_engine_sensor_drop(fh_engine *e, size_t i);

void fh_sensor_init(fh_sensor *s, const fh_profile *p);
void fh_sensor_clear(fh_sensor *s);
void fh_pair_reset(fh_pair *p);
void fh_recent_insert(fh_recent *r, int64_t ts, int64_t horizon);
int64_t fh_recent_at(const fh_recent *r, size_t i);   /* i-th oldest */
int64_t fh_recent_horizon(const fh_engine *e, int64_t latest);
/* Where one call's alerts go: the engine's callback, or the caller's own
 * for one reading (fh_engine_ingest_to). */
typedef struct fh_alert_sink {
        fh_alert_fn fn;
        void *userdata;
} fh_alert_sink;

void fh_engine_eval_pair(fh_engine *e, const fh_alert_sink *out, fh_sensor *s, uint32_t pi, int64_t t);

#endif
