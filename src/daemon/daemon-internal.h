/* Internal to src/daemon's daemon files (daemon.c, kafka_in.c, outbox.c,
 * rebalance.c, checkpoint.c, reload.c, metrics.c, cap_out.c): struct fh_daemon and the
 * functions they call across files. Not API: the fhd_ prefix marks these
 * names as internal; everything else includes daemon.h only. Everything
 * here runs on the loop thread unless its file says otherwise. */
#pragma once

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <librdkafka/rdkafka.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>
#include "fenghuo/buf.h"
#include "fenghuo/timeutil.h"
#include "fenghuo/load.h"
#include "daemon.h"
#include "log.h"
#include "redis_sink.h"
#include "dedupe.h"
#include "handoff.h"
#include "state.h"
#include "tracker.h"

/* Messages handled per loop iteration before other events get a turn. */
#define DRAIN_BATCH 2048

/* Something on its way to the sinks: an alert, or a dead letter. It lives
 * until every sink confirmed it, and is saved with checkpoints until then. */
typedef struct fh_out {
        struct fh_out *prev, *next;
        fh_daemon *d;
        fh_track *track;          /* the message that caused it; NULL for ticks */
        uint8_t gating;           /* sinks whose answer still holds back the commit */
        bool in_retry;
        uint8_t retry_sinks;      /* which sinks the retry timer tries again */
        struct fh_out *retry_next;
        fh_outbox_item it;        /* payload; it.sinks = not yet confirmed */
} fh_out;

/* One revoked partition's hand-over on its way to the state topic (the
 * opaque of its chunks). */
typedef struct handover {
        struct handover *next;    /* every one, freed with the daemon */
        char *topic;
        int32_t partition;
        uint16_t slot;
        int64_t pos;
        size_t bytes, chunks;
        size_t pending;           /* chunks not reported yet; SIZE_MAX once settled */
        bool failed;
        bool settled;             /* the rebalance stopped waiting: the last report decides */
} handover;

typedef struct kafka_wake {
        uv_poll_t poll;
        int fds[2];
        bool started;
} kafka_wake;

/* A message handed to a shard, and what became of it. */
typedef struct fhd_work {
        rd_kafka_message_t *m;
        uint16_t slot;
} fhd_work;

enum { FHD_READ_OK, FHD_READ_REJECTED, FHD_READ_FUTURE };

typedef struct fhd_read {
        rd_kafka_message_t *m;
        uint16_t slot;
        uint8_t what;             /* FHD_READ_* */
        fh_reject rej;            /* FHD_READ_REJECTED: why */
        uint32_t station;         /* FHD_READ_OK: its index */
        uint32_t n_alerts;        /* its alerts, next in the batch's alerts */
        int64_t ts;
        char *why;                /* rejected: the explanation (malloc) */
} fhd_read;

/* What a shard hands back: the messages in the order given, with their
 * alerts (copies: their rule and station belong to the model, which
 * outlives them). */
typedef struct fhd_batch {
        fhd_read *r;
        size_t n, cap;
        fh_alert *a;
        size_t na, cap_a;
} fhd_batch;

typedef struct fhd_work_list {
        fhd_work *v;
        size_t n, cap;
} fhd_work_list;

/* One engine over the sensors of some input partitions, on a thread of its
 * own: the state of a partition's sensors lives in its shard's engine
 * (shard.c). The engines of all shards share one model. */
typedef struct fhd_shard {
        fh_daemon *d;
        fh_engine *engine;        /* changed by the loop only while the shard is idle */
        pthread_t thread;
        bool started;
        pthread_mutex_t mu;
        pthread_cond_t work, idle;
        /* Under mu. */
        fhd_work_list in;         /* given, not yet taken */
        int64_t now;              /* wall time of the input, for the future check */
        bool busy, quit;
        fhd_batch done;           /* handed back, not yet collected */
        /* The loop's alone. */
        fhd_work_list staged;     /* for in, at the end of the loop's turn */
        fhd_batch collected;
        /* The thread's alone. */
        fhd_work_list taken;
        fhd_batch mine;
} fhd_shard;

struct fh_daemon {
        uv_loop_t *loop;
        fh_daemon_config cfg;
        fh_daemon_hooks hooks;
        fhd_shard *shards;
        size_t n_shards;
        uv_async_t shard_async;   /* a shard handed a batch back */
        bool shard_async_started;
        size_t outstanding;       /* messages given to shards, not yet collected */
        bool collecting;
        uint8_t *slot_shard;      /* per slot (like slots): its shard */
        /* The slot of the last message's partition: most messages come
         * in runs of one partition. */
        const rd_kafka_topic_t *last_rkt;
        int32_t last_partition;
        uint16_t last_slot;

        rd_kafka_t *consumer;
        rd_kafka_t *producer;
        rd_kafka_queue_t *cq, *pq;
        kafka_wake cwake, pwake;
        uv_idle_t drain_idle;
        rd_kafka_topic_partition_list_t *assignment;
        /* Positions from the state file, each used when its partition is
         * first assigned: after a crash the first assignment is often
         * partial (the dead instance is still in the group until its
         * session expires), and the rest come at the next one. */
        fh_offsets resume;
        /* Where each assigned partition starts, until this run has
         * processed a message of it (the tracker knows only those). With
         * the unused resume positions, a checkpoint must keep these, or the
         * state it saves would be replayed from the committed offsets,
         * which can be past it. */
        fh_offsets carried;
        /* Where each assigned partition ended when this run last reached
         * its end (partition EOF): with nothing new to read, the only
         * position there is, and the lag is measured from it. */
        fh_offsets eof;
        /* The input positions of the last checkpoint written (or restored):
         * no offset past them is committed, so that a crash always
         * restarts from a state that has every reading before the
         * committed offsets. */
        fh_offsets durable;
        fh_offsets stored;        /* what was last handed to rd_kafka_offsets_store */
        bool paused;

        fh_redis *redis;
        fh_tracker *tracker;
        fh_strset *suppress;      /* alerts already on the Kafka topic (after a crash) */
        /* Which input partition each station's readings come from (index
         * into slots, 0 = none yet), so a revoked partition's sensors can
         * be handed over. */
        uint16_t *sensor_slot;
        fh_offset *slots;
        size_t n_slots;
        fh_offsets watermarks;    /* alerts topic: offset after the last confirmed alert */
        handover *handovers;
        uint64_t max_generation;  /* newest hand-over generation written or taken over */
        fh_offsets scan_from;     /* where the suppression set was read from */
        fh_out *retry;            /* Kafka deliveries to try again */
        uv_timer_t retry_timer;
        uint64_t suppressed;
        fh_out outs;              /* list head of alerts in flight */
        struct fhd_cap *cap;      /* CAP output (cap_out.c), NULL when not configured */
        size_t n_outs;
        fh_out *out_slab;         /* items for reuse (outbox.c) */
        fh_out *free_outs;
        fh_buf json;

        uv_timer_t tick_timer, checkpoint_timer, stats_timer, stop_timer, commit_timer;
        uv_signal_t sig_term, sig_int, sig_hup;

        bool signals_started;
        unsigned setup_closing;   /* close callbacks a failed start waits for */
        bool stopping;
        bool stopped;
        bool redis_closed;
        int exit_code;
        int64_t stop_deadline;
        uint64_t watchdog_usec;
        uint64_t watchdog_last;
        uint64_t dlq, future_rejected, delivery_errors, consumed, pauses;
        int64_t last_input_ms;
        int64_t batch_now;
        int64_t newest_ts;        /* newest reading accepted: how far behind the input is */
        /* The counts of the engines that reloads replaced: the figures are
         * counters and must never go down. */
        fh_engine_stats stats_before;
        bool metrics_failing;
        bool checkpoint_failing;
        pid_t checkpoint_pid;     /* the child writing a checkpoint, 0 when none */
        fh_offsets checkpoint_positions;  /* the input positions of its cut */
        bool checkpoint_again;    /* one more was asked for meanwhile */
        bool reloading, reload_again;
        bool frozen;              /* a reload reads the engine on a worker: no input, no ticks */
        struct rebalance *rebalance;  /* the one under way, NULL when none */
        uv_timer_t rebalance_timer;
        uint64_t checkpoint_t0;
};

typedef struct slot_set {
        const fh_daemon *d;
        const bool *slots;       /* indexed by slot */
} slot_set;

typedef struct rebalance {
        bool assign;
        bool cancelled;                 /* a revocation came before the assignment finished */
        bool in_worker;                 /* req is queued: only its after-callback may free this */
        rd_kafka_topic_partition_list_t *parts;
        uv_work_t req;
        /* assignment */
        char **keys;
        fh_buf *values;
        bool *found;
        uint64_t *gens;
        int r;
        long scanned;
        char err[512];
        fh_offsets scan;
        bool *taken;                    /* slots restored from hand-overs */
        slot_set ss;
        fh_strset *seen;                /* alerts read back by the worker */
        /* revocation */
        int step;
        int next;
        uint64_t deadline;
        handover **hs;
        size_t nh;
} rebalance;

static inline int64_t wall_ms(void) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The input message an alert or dead letter comes from: it is committed
 * only once they are delivered. */
typedef struct fhd_source {
        fh_daemon *d;
        fh_track *track;
} fhd_source;

/* outbox.c */
void fhd_on_redis_ack(void *userdata, void *token, int status);
void fhd_on_redis_state(void *userdata, bool up);
/* The engine's alert callback: alerts of ticks and reloads, no message. */
void fhd_on_alert(void *userdata, const fh_alert *a);
/* fh_engine_ingest_to's: userdata is an fhd_source. */
void fhd_on_message_alert(void *userdata, const fh_alert *a);
void fhd_dead_letter(fh_daemon *d, fh_track *track, const rd_kafka_message_t *m, const char *reason,
                     const char *why);
void fhd_resend_outbox(fh_daemon *d, fh_checkpoint *c);
void fhd_on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque);
/* Frees every item, confirmed or not (the producer must be gone: it
 * reads their payloads until it is). */
void fhd_outs_free(fh_daemon *d);

/* Takes over the caller's reference to p. */
fh_out *fhd_out_new(fh_daemon *d, fh_track *track, fh_payload *p);
void fhd_out_send(fh_daemon *d, fh_out *o, uint8_t sinks);
void fhd_out_confirm(fh_out *o, uint8_t sink);
/* Tries sink of o again from the retry timer, in about ms. */
void fhd_out_retry(fh_daemon *d, fh_out *o, uint8_t sink, uint64_t ms);

/* cap_out.c */
int fhd_cap_init(fh_daemon *d);
void fhd_cap_free(fh_daemon *d);
/* The CAP message of an alert event into the outbox. */
void fhd_cap_publish(fh_daemon *d, const fh_alert *a, fh_track *track);
/* Writes o's CAP file (FH_SINK_FILE): confirmed, or retried later. */
void fhd_cap_file(fh_daemon *d, fh_out *o);

/* kafka_in.c */
void fhd_on_drain_idle(uv_idle_t *h);
int fhd_wake_init(fh_daemon *d, kafka_wake *w, rd_kafka_queue_t *q);
void fhd_store_offsets(fh_daemon *d, const rd_kafka_topic_partition_list_t *leaving);
void fhd_on_commit_timer(uv_timer_t *h);
int fhd_kafka_start(fh_daemon *d);
int fhd_kafka_subscribe(fh_daemon *d);

/* rebalance.c */
uint16_t fhd_slot_of(fh_daemon *d, const char *topic, int32_t partition, bool create);
/* The same, created for an assignment of parts (its shard chosen among
 * theirs). */
uint16_t fhd_slot_of_assigned(fh_daemon *d, const char *topic, int32_t partition,
                              const rd_kafka_topic_partition_list_t *parts);
void fhd_handover_delivered(fh_daemon *d, handover *h, rd_kafka_resp_err_t err);
void fhd_rebalance_free(fh_daemon *d, rebalance *rb);
bool fhd_revoking(const fh_daemon *d);
void fhd_revoke_finish_now(fh_daemon *d, rebalance *rb);
void fhd_on_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t *parts, void *opaque);

/* checkpoint.c */
void fhd_on_tick(uv_timer_t *h);
void fhd_checkpoint_reap(fh_daemon *d, bool block);
void fhd_checkpoint_start(fh_daemon *d);
int fhd_checkpoint(fh_daemon *d);
void fhd_on_checkpoint(uv_timer_t *h);

/* metrics.c */
void fhd_stats_total(const fh_daemon *d, fh_engine_stats *restrict ret);
void fhd_log_stats(fh_daemon *d);
void fhd_on_stats(uv_timer_t *h);

/* reload.c */
void fhd_reload(fh_daemon *d);

/* shard.c */
/* n engines, the first e0 (taken), the others engines of its model with
 * its configuration; alerts to fhd_on_alert(d). */
fh_engine **fhd_engines_new(fh_engine *e0, size_t n, fh_daemon *d);
/* Frees n engines and their array, NULL accepted. */
void fhd_engines_free(fh_engine **es, size_t n);
/* The first shard's engine: what every shard's engine shares (the model,
 * the configuration) is read from it. */
static inline fh_engine *fhd_engine0(const fh_daemon *d) {
        return d->shards[0].engine;
}
const fh_registry *fhd_registry(const fh_daemon *d);
/* The shard holding the state of a slot's sensors (slot 0: the first). */
fhd_shard *fhd_shard_of_slot(const fh_daemon *d, uint16_t slot);
uint8_t fhd_shard_for_new_slot(const fh_daemon *d, const rd_kafka_topic_partition_list_t *pending);
/* The slot of a partition, created with its shard when new. */
uint16_t fhd_slot_of_message(fh_daemon *d, const rd_kafka_message_t *m);
/* Maps the new slots of an assignment to the shards with the fewest of
 * its partitions, and counts them. */
void fhd_shards_assign(fh_daemon *d, const rd_kafka_topic_partition_list_t *parts);
void fhd_shards_tick(fh_daemon *d, int64_t now);
void fhd_shards_set_clock(fh_daemon *d, int64_t now);
/* Every shard's engine's active alerts, shard after shard. */
void fhd_shards_foreach_active(const fh_daemon *d, fh_alert_fn fn, void *userdata);
/* es[i] = shard i's engine, for i < n_shards (es has FH_SHARDS_MAX). */
void fhd_shard_engines(const fh_daemon *d, const fh_engine **es);
/* The union of the shards' state: one snapshot. */
void fhd_shards_snapshot(const fh_daemon *d, fh_buf *out);
/* A snapshot's sensors restored each into the shard of its slot
 * (sensor_slot); 0 or -EBADMSG. */
int fhd_shards_restore(fh_daemon *d, fh_engine **es, const void *data, size_t len);
/* The shards' threads; stopped (and what they still hold dropped) by
 * fhd_shards_stop, which fh_daemon_free calls. */
int fhd_shards_start(fh_daemon *d);
void fhd_shards_stop(fh_daemon *d);
/* A message for its partition's shard, staged: given at fhd_shards_flush. */
void fhd_shards_give(fh_daemon *d, rd_kafka_message_t *m);
void fhd_shards_flush(fh_daemon *d);
/* Enough given and not yet collected: the input waits for the shards. */
bool fhd_shards_full(const fh_daemon *d);
/* Takes in what the shards handed back: tracks, alerts, dead letters. */
void fhd_shards_collect(fh_daemon *d);
/* Every message given is processed and collected, and the shards are
 * idle until the loop gives them more: what touches the engines from the
 * loop (ticks, checkpoints, reloads, hand-overs, stats) comes after this. */
void fhd_shards_quiesce(fh_daemon *d);
/* After a state file restored into the first shard, with sensor_slot
 * set: each sensor's state moved to the shard of its partition. */
void fhd_shards_spread(fh_daemon *d);
/* Adds the counts of s to *ret. */
void fhd_stats_add(fh_engine_stats *restrict ret, const fh_engine_stats *restrict s);
/* The shards' counts added up. */
void fhd_shards_stats(const fh_daemon *d, fh_engine_stats *ret);
