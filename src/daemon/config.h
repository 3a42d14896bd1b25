/* The daemon's configuration file (YAML), documented in docs/operations.md
 * with an example in etc/fenghuo.yaml. */
#ifndef FENGHUO_DAEMON_CONFIG_H
#define FENGHUO_DAEMON_CONFIG_H

#include "fenghuo/common.h"
#include "fenghuo/diag.h"
#include <librdkafka/rdkafka.h>

#include "redis_sink.h"

typedef struct fh_kv {
        char *key;
        char *value;
} fh_kv;

typedef struct fh_kvs {
        fh_kv *v;
        size_t n;
} fh_kvs;

#define FH_SHARDS_MAX 64

typedef struct fh_daemon_config {
        char *path;                    /* the file itself, for reloads */
        char *rules;                   /* rules directory */
        char *stations;                /* registry CSV */
        char *state_dir;               /* NULL: no state kept across restarts */
        int64_t tick_ms;
        int64_t lateness_ms;
        int64_t future_ms;             /* readings further ahead of wall time are rejected */
        long max_readings_per_minute;  /* per sensor, 0: no cap (fh_engine_config) */
        long max_window_samples;       /* per (sensor, field), 0: no cap */
        long shards;                   /* engines the state is split into, by input
                                          partition, each on a thread of its own when
                                          more than one: 1..FH_SHARDS_MAX, 0 = the
                                          online CPUs */
        int tz_offset_min;
        int log_level;                 /* syslog priority: 3 err .. 7 debug */
        bool stdout_alerts;            /* JSON Lines on stdout */
        int64_t shutdown_timeout_ms;
        int64_t checkpoint_ms;         /* periodic state checkpoint, 0 = only at shutdown */
        int64_t stats_ms;              /* how often a stats line is logged */
        char *metrics_file;            /* Prometheus text file rewritten with each stats line */
        bool event_clock;              /* ticks follow the data's time, as in replay
                                          (backfills, the demo); no future check */

        char *brokers;
        char *group_id;
        char *topics[FH_KIND__MAX];    /* input topic per station kind, NULL = not consumed */
        char *alerts_topic;            /* NULL: no Kafka alerts */
        char *dead_letter_topic;       /* NULL: rejected readings only logged */
        char *state_topic;             /* compacted topic that carries partition state
                                          across rebalances; NULL: not kept */
        char *cap_topic;               /* CAP 1.2 XML of every alert event; NULL: none */
        fh_kvs kafka_props;            /* librdkafka properties for both clients */
        fh_kvs consumer_props;
        fh_kvs producer_props;
        size_t max_in_flight;          /* undelivered alerts before consumption pauses */
        size_t max_pending;            /* readings not yet committable (behind an
                                          undelivered alert) before it pauses */

        /* CAP output (src/daemon/cap_out.c): the files' directory (NULL:
         * none), the issuing unit and its name (NULL: fenghuo/cap.h's
         * defaults), and status Exercise instead of Actual. */
        char *cap_dir;
        char *cap_unit;
        char *cap_sender;
        bool cap_exercise;

        bool redis_enabled;
        fh_redis_config redis;
} fh_daemon_config;

/* Why the daemon sets the librdkafka property key itself and a user may
 * not (a sentence), or NULL when a user may set it. */
const char *fh_kafka_prop_guarded(const char *key);
/* rd_kafka_conf_set() whose message (on -EINVAL) never holds the value. */
int fh_kafka_conf_set(rd_kafka_conf_t *conf, const char *key, const char *value, char *err, size_t errlen);

/* Parses path. 0, or -EINVAL with every problem in diags. */
int fh_daemon_config_load(const char *path, fh_daemon_config *ret, fh_diags *diags);
void fh_daemon_config_free(fh_daemon_config *c);

#endif
