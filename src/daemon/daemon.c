#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <librdkafka/rdkafka.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include "fenghuo/buf.h"
#include "fenghuo/timeutil.h"
#include "../cli/cli.h"
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

struct fh_daemon {
        uv_loop_t *loop;
        fh_daemon_config cfg;
        fh_daemon_hooks hooks;
        fh_engine *engine;

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
        fh_track *current;        /* the message being processed */
        fh_out outs;              /* list head of alerts in flight */
        size_t n_outs;
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

static void on_retry_timer(uv_timer_t *h);
static void handover_delivered(fh_daemon *d, handover *h, rd_kafka_resp_err_t err);
static void checkpoint_reap(fh_daemon *d, bool block);
static void checkpoint_start(fh_daemon *d);
static void reload(fh_daemon *d);
static uint16_t slot_of(fh_daemon *d, const char *topic, int32_t partition, bool create);

static int64_t wall_ms(void) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- alerts out ---- */

static void out_release_gate(fh_out *o, uint8_t sink) {
        fh_daemon *d = o->d;

        if (!(o->gating & sink))
                return;
        o->gating &= (uint8_t) ~sink;
        if (o->gating == 0 && o->track) {
                fh_tracker_release(d->tracker, o->track);
                o->track = NULL;
        }
}

/* A sink confirmed: when it was the last, the item is done. */
static void out_confirm(fh_out *o, uint8_t sink) {
        fh_daemon *d = o->d;

        out_release_gate(o, sink);
        o->it.sinks &= (uint8_t) ~sink;
        if (o->it.sinks)
                return;
        o->prev->next = o->next;
        o->next->prev = o->prev;
        d->n_outs--;
        fh_outbox_item_clear(&o->it);
        free(o);
}

static void on_redis_ack(void *userdata, void *token, int status) {
        fh_out *o = token;
        (void) userdata;
        if (status == FH_REDIS_DEFERRED)
                /* Redis went away with this alert unanswered: it waits in the
                 * sink's backlog and in our checkpoints, and no longer holds
                 * back the Kafka commit. */
                out_release_gate(o, FH_SINK_REDIS);
        else
                out_confirm(o, FH_SINK_REDIS);
}

static fh_out *out_new(fh_daemon *d, fh_track *track) {
        fh_out *o = fh_calloc(1, sizeof(*o));

        o->d = d;
        o->track = track;
        o->next = &d->outs;
        o->prev = d->outs.prev;
        d->outs.prev->next = o;
        d->outs.prev = o;
        d->n_outs++;
        if (track)
                fh_track_hold(track);
        /* Held by the caller until every sink has been handed the item. */
        o->it.sinks = 0x80;
        o->gating = 0x80;
        return o;
}

static void kafka_produce(fh_daemon *d, fh_out *o) {
        const fh_outbox_item *it = &o->it;
        rd_kafka_resp_err_t err;

        if (it->kind == FH_OUT_ALERT) {
                err = rd_kafka_producev(d->producer,
                                        RD_KAFKA_V_TOPIC(d->cfg.alerts_topic),
                                        RD_KAFKA_V_KEY(it->key, it->key_len),
                                        RD_KAFKA_V_VALUE(it->value, it->value_len),
                                        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                        RD_KAFKA_V_OPAQUE(o),
                                        RD_KAFKA_V_END);
        } else {
                char part[16], off[24];
                snprintf(part, sizeof(part), "%d", it->src_partition);
                snprintf(off, sizeof(off), "%lld", (long long) it->src_offset);
                err = rd_kafka_producev(d->producer,
                                        RD_KAFKA_V_TOPIC(d->cfg.dead_letter_topic),
                                        RD_KAFKA_V_KEY(it->key, it->key_len),
                                        RD_KAFKA_V_VALUE(it->value, it->value_len),
                                        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                        RD_KAFKA_V_HEADER("fenghuo.reason", it->reason, -1),
                                        RD_KAFKA_V_HEADER("fenghuo.detail", it->detail, -1),
                                        RD_KAFKA_V_HEADER("fenghuo.topic", it->src_topic, -1),
                                        RD_KAFKA_V_HEADER("fenghuo.partition", part, -1),
                                        RD_KAFKA_V_HEADER("fenghuo.offset", off, -1),
                                        RD_KAFKA_V_OPAQUE(o),
                                        RD_KAFKA_V_END);
        }
        if (err) {
                /* The local queue is sized far above max_in_flight; should it
                 * still refuse, try again from the retry timer. */
                d->delivery_errors++;
                log_err("failed to queue for Kafka: %s", rd_kafka_err2str(err));
                if (!o->in_retry) {
                        o->in_retry = true;
                        o->retry_next = d->retry;
                        d->retry = o;
                }
                if (!uv_is_active((uv_handle_t *) &d->retry_timer))
                        uv_timer_start(&d->retry_timer, on_retry_timer, 1000, 0);
        }
}

/* Hands the item to the sinks still in it.sinks (those not confirmed). */
static void out_send(fh_daemon *d, fh_out *o, uint8_t sinks) {
        fh_outbox_item *it = &o->it;

        if ((sinks & FH_SINK_KAFKA) && d->producer &&
            (it->kind == FH_OUT_ALERT ? d->cfg.alerts_topic != NULL : d->cfg.dead_letter_topic != NULL)) {
                if (it->kind == FH_OUT_ALERT && it->dedupe && d->suppress && fh_strset_take(d->suppress, it->dedupe)) {
                        /* Already on the topic before the crash: not twice. */
                        d->suppressed++;
                } else {
                        o->it.sinks |= FH_SINK_KAFKA;
                        o->gating |= FH_SINK_KAFKA;
                        kafka_produce(d, o);
                }
        }
        if ((sinks & FH_SINK_REDIS) && d->redis && it->kind == FH_OUT_ALERT) {
                bool up = fh_redis_connected(d->redis);
                int r = fh_redis_send_once(d->redis, it->value, it->value_len, it->field, it->level, it->cleared,
                                           it->dedupe, o);
                if (r < 0) {
                        log_err("Redis backlog full: alert %s not queued for Redis", it->dedupe);
                } else {
                        o->it.sinks |= FH_SINK_REDIS;
                        if (up)
                                o->gating |= FH_SINK_REDIS;
                }
        }
        out_confirm(o, 0x80);
}

typedef struct active_list {
        const fh_engine *e;
        char **fields;
        char **jsons;
        size_t n, cap;
} active_list;

static void collect_active(void *userdata, const fh_alert *a) {
        active_list *l = userdata;
        fh_buf j = FH_BUF_NULL;
        char field[256];

        if (l->n == l->cap) {
                l->cap = l->cap ? l->cap * 2 : 64;
                l->fields = fh_realloc(l->fields, l->cap * sizeof(*l->fields));
                l->jsons = fh_realloc(l->jsons, l->cap * sizeof(*l->jsons));
        }
        snprintf(field, sizeof(field), "%s:%s", a->rule->id, a->station->id);
        fh_alert_to_json(l->e, a, &j);
        l->fields[l->n] = fh_strdup(field);
        l->jsons[l->n++] = j.data ? j.data : fh_strdup("");
}

/* Redis came (back): after what waits in the backlog, the active hash is
 * made exactly the engine's alerts active now, whatever Redis lost. */
static void on_redis_state(void *userdata, bool up) {
        fh_daemon *d = userdata;
        active_list l = { .e = d->engine };

        if (!up) {
                if (!d->stopping)
                        log_warning("Redis connection lost: %s; alerts wait in the backlog (%zu now)",
                                    fh_redis_last_error(d->redis), fh_redis_backlog(d->redis));
                return;
        }
        fh_engine_foreach_active(d->engine, collect_active, &l);
        if (fh_redis_sync_active(d->redis, (const char *const *) l.fields, (const char *const *) l.jsons, l.n) < 0)
                log_err("Redis: cannot queue the active-alerts resync (backlog full)");
        log_notice("Redis connected; backlog=%zu active=%zu", fh_redis_backlog(d->redis), l.n);
        for (size_t i = 0; i < l.n; i++) {
                free(l.fields[i]);
                free(l.jsons[i]);
        }
        free(l.fields);
        free(l.jsons);
}

static void publish(fh_daemon *d, const fh_alert *a) {
        fh_buf *j = &d->json;
        char ts[FH_TIME_RFC3339_MAX], key[512];
        fh_out *o;

        fh_buf_reset(j);
        fh_alert_to_json(d->engine, a, j);
        if (d->cfg.stdout_alerts) {
                fwrite(j->data, 1, j->len, stdout);
                fputc('\n', stdout);
                fflush(stdout);
        }
        if (d->hooks.on_alert)
                d->hooks.on_alert(d->hooks.userdata, a, j->data, j->len);

        o = out_new(d, d->current);
        fh_outbox_item *it = &o->it;
        it->kind = FH_OUT_ALERT;
        it->key = fh_strndup(a->station->id, a->station->id_len);
        it->key_len = a->station->id_len;
        it->value = fh_strndup(j->data, j->len);
        it->value_len = j->len;
        snprintf(key, sizeof(key), "%s:%s", a->rule->id, a->station->id);
        it->field = fh_strdup(key);
        it->level = fh_strdup(fh_level_name(a->level));
        it->cleared = a->event == FH_EVENT_CLEARED;
        fh_time_format_rfc3339(a->ts_ms, d->cfg.tz_offset_min, ts);
        snprintf(key, sizeof(key), "%s:%s:%lld|%s|%s", a->rule->id, a->station->id, (long long) a->raised_ms,
                 fh_event_name(a->event), ts);
        it->dedupe = fh_strdup(key);
        out_send(d, o, FH_SINK_KAFKA | FH_SINK_REDIS);
}

static void on_alert(void *userdata, const fh_alert *a) {
        publish(userdata, a);
}

/* ---- dead letters ---- */

static void dead_letter(fh_daemon *d, const rd_kafka_message_t *m, const char *reason, const char *why) {
        d->dlq++;
        log_debug("rejected reading topic=%s partition=%d offset=%" PRId64 " reason=%s: %s",
                  rd_kafka_topic_name(m->rkt), m->partition, m->offset, reason, why);
        if (!d->producer || !d->cfg.dead_letter_topic)
                return;
        fh_out *o = out_new(d, d->current);
        fh_outbox_item *it = &o->it;
        it->kind = FH_OUT_DEAD_LETTER;
        it->key = m->key ? fh_strndup(m->key, m->key_len) : NULL;
        it->key_len = m->key ? m->key_len : 0;
        it->value = fh_strndup(m->payload ? m->payload : "", m->len);
        it->value_len = m->len;
        it->reason = fh_strdup(reason);
        it->detail = fh_strdup(why);
        it->src_topic = fh_strdup(rd_kafka_topic_name(m->rkt));
        it->src_partition = m->partition;
        it->src_offset = m->offset;
        out_send(d, o, FH_SINK_KAFKA);
}

/* Re-sends what a checkpoint held unconfirmed, before anything new. */
static void resend_outbox(fh_daemon *d, fh_checkpoint *c) {
        for (size_t i = 0; i < c->n_outbox; i++) {
                fh_out *o = out_new(d, NULL);
                uint8_t sinks = c->outbox[i].sinks;
                o->it = c->outbox[i];
                o->it.sinks = 0x80;
                c->outbox[i] = (fh_outbox_item) { 0 };
                out_send(d, o, sinks);
        }
        if (c->n_outbox)
                log_notice("re-sent %zu alerts and dead letters a previous run had not seen confirmed", c->n_outbox);
}

/* ---- consuming ---- */

static void handle_message(fh_daemon *d, rd_kafka_message_t *m) {
        fh_reading rd;
        char why[256];
        fh_reject rej;
        fh_outcome o;

        if (m->err) {
                if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF)
                        fh_offsets_add(&d->eof, rd_kafka_topic_name(m->rkt), m->partition, m->offset);
                else
                        log_warning("Kafka consumer: %s", rd_kafka_message_errstr(m));
                return;
        }
        d->consumed++;
        d->last_input_ms = d->batch_now;
        d->current = fh_tracker_begin(d->tracker, rd_kafka_topic_name(m->rkt), m->partition, m->offset);

        if (!m->payload || m->len == 0) {
                rej = FH_REJECT_MALFORMED_JSON;
                snprintf(why, sizeof(why), "empty message");
        } else
                rej = fh_reading_parse(m->payload, m->len, &rd, why, sizeof(why));
        if (rej != FH_REJECT_NONE) {
                fh_engine_count_reject(d->engine, rej);
                dead_letter(d, m, fh_reject_name(rej), why);
        } else if (!d->cfg.event_clock && rd.ts_ms > d->last_input_ms + d->cfg.future_ms) {
                /* SPEC §3.3: a gauge with a wrong clock must not push
                 * windows into the future. */
                char ts[FH_TIME_RFC3339_MAX];
                fh_time_format_rfc3339(rd.ts_ms, d->cfg.tz_offset_min, ts);
                snprintf(why, sizeof(why), "timestamp %s is more than %lld s ahead of this machine's clock",
                         ts, (long long) (d->cfg.future_ms / 1000));
                d->future_rejected++;
                dead_letter(d, m, "future_timestamp", why);
        } else if ((o = fh_engine_ingest(d->engine, &rd)), fh_outcome_reject(o) != FH_REJECT_NONE) {
                fh_engine_explain(d->engine, &rd, o, why, sizeof(why));
                dead_letter(d, m, fh_reject_name(fh_outcome_reject(o)), why);
        } else {
                if (rd.ts_ms > d->newest_ts)
                        d->newest_ts = rd.ts_ms;
                /* Remember the sensor's partition: its state moves with it,
                 * and after a crash only its alerts are looked for again. */
                const fh_station *st = fh_engine_last_station(d->engine);
                if (d->sensor_slot[st->index] == 0)
                        d->sensor_slot[st->index] = slot_of(d, rd_kafka_topic_name(m->rkt), m->partition, true);
        }
        fh_track *t = d->current;
        d->current = NULL;
        fh_tracker_release(d->tracker, t);
}

static size_t in_flight(const fh_daemon *d) {
        size_t n = d->n_outs;
        if (d->redis)
                n += fh_redis_backlog(d->redis);
        return n;
}

static void set_paused(fh_daemon *d, bool pause) {
        if (d->paused == pause || !d->assignment)
                return;
        d->paused = pause;
        if (pause) {
                d->pauses++;
                rd_kafka_pause_partitions(d->consumer, d->assignment);
                log_warning("consumption paused: %zu alerts waiting for delivery (limit %zu), %zu readings held "
                            "uncommitted (limit %zu)",
                            in_flight(d), d->cfg.max_in_flight, fh_tracker_pending(d->tracker), d->cfg.max_pending);
        } else {
                rd_kafka_resume_partitions(d->consumer, d->assignment);
                log_notice("consumption resumed: %zu alerts waiting for delivery, %zu readings held uncommitted",
                           in_flight(d), fh_tracker_pending(d->tracker));
        }
}

/* Two bounds: alerts waiting for a sink, and readings waiting to become
 * committable. One alert Kafka never confirms holds back every later
 * reading of its partition, alerts or not: without the second bound the
 * tracker would grow with the input for as long as it stays stuck. */
static void check_flow(fh_daemon *d) {
        size_t n = in_flight(d), k = fh_tracker_pending(d->tracker);
        if (!d->paused && (n >= d->cfg.max_in_flight || k >= d->cfg.max_pending))
                set_paused(d, true);
        else if (d->paused && n <= d->cfg.max_in_flight / 2 && k <= d->cfg.max_pending / 2)
                set_paused(d, false);
}

static bool revoking(const fh_daemon *d);

static bool drain_consumer(fh_daemon *d) {
        /* One clock read per turn: the future check needs seconds, not
         * nanoseconds. */
        d->batch_now = wall_ms();
        for (int done = 0; done < DRAIN_BATCH; done++) {
                /* Paused, the queue is still polled: it holds the messages
                 * fetched before the pause, which librdkafka discards only
                 * when polled, and while it is not empty its io-event fd
                 * never fires again, for the messages after the resume or
                 * for a rebalance. Frozen (a reload reading the engine), it
                 * is not: the drain starts again at the swap. */
                if (d->stopping || d->frozen)
                        return false;
                /* One message at a time, not rd_kafka_consume_batch_queue():
                 * up to librdkafka 2.0.2 (Debian 12's) the batch call could
                 * skip offsets when partitions are paused and resumed, which
                 * flow control does (fixed in 2.1.0, see
                 * docs/architecture.md). From the queue whose io-event fd
                 * the loop watches. Rebalance and error events are served
                 * inside. */
                rd_kafka_message_t *m = rd_kafka_consume_queue(d->cq, 0);
                if (!m)
                        return false;
                /* During a revocation the state being handed over must
                 * not move; its partitions are paused, and what was
                 * fetched before is read again by the next owner from the
                 * handed-over position. */
                if (!revoking(d))
                        handle_message(d, m);
                rd_kafka_message_destroy(m);
                /* Pause at once: what is already fetched is purged by
                 * librdkafka and fetched again after the resume. */
                check_flow(d);
        }
        return true;
}

static bool drain_producer(fh_daemon *d) {
        /* Delivery reports run inside rd_kafka_poll. */
        for (int i = 0; i < 64; i++)
                if (rd_kafka_poll(d->producer, 0) == 0)
                        return false;
        return true;
}

static void drain(fh_daemon *d);

static void on_drain_idle(uv_idle_t *h) {
        drain(h->data);
}

static void drain(fh_daemon *d) {
        bool more = false;

        if (d->producer)
                more |= drain_producer(d);
        if (d->consumer && !d->stopping)
                more |= drain_consumer(d);
        check_flow(d);
        /* The io-event fd only fires when a queue goes from empty to
         * non-empty, so a queue left non-empty must be revisited. */
        if (more)
                uv_idle_start(&d->drain_idle, on_drain_idle);
        else
                uv_idle_stop(&d->drain_idle);
}

static void on_wake(uv_poll_t *h, int status, int events) {
        fh_daemon *d = h->data;
        kafka_wake *w = h == &d->cwake.poll ? &d->cwake : &d->pwake;
        char buf[256];

        (void) status;
        (void) events;
        while (read(w->fds[0], buf, sizeof(buf)) > 0)
                ;
        drain(d);
}

static int wake_init(fh_daemon *d, kafka_wake *w, rd_kafka_queue_t *q) {
        if (pipe2(w->fds, O_NONBLOCK | O_CLOEXEC) < 0)
                return -errno;
        int r = uv_poll_init(d->loop, &w->poll, w->fds[0]);
        if (r < 0)
                return r;   /* the pipe is closed by fh_daemon_free() */
        rd_kafka_queue_io_event_enable(q, w->fds[1], "1", 1);
        w->poll.data = d;
        uv_poll_start(&w->poll, UV_READABLE, on_wake);
        w->started = true;
        return 0;
}

/* ---- offsets ---- */

typedef struct offset_batch {
        fh_daemon *d;
        const rd_kafka_topic_partition_list_t *leaving;
        rd_kafka_topic_partition_list_t *list;
} offset_batch;

static void add_offset(void *userdata, const char *topic, int32_t partition, int64_t next) {
        offset_batch *b = userdata;
        fh_daemon *d = b->d;

        /* With a state directory, a crash restarts from the last checkpoint:
         * an offset past it would skip readings its state never saw. A
         * partition leaving us is the exception: our checkpoints no longer
         * speak for it, and its next owner starts from the hand-over or
         * with empty windows at the committed offset, where a later offset
         * means fewer alerts published twice. */
        if (d->cfg.state_dir && !(b->leaving && rd_kafka_topic_partition_list_find(b->leaving, topic, partition))) {
                int64_t cp = fh_offsets_get(&d->durable, topic, partition);
                if (cp < 0)
                        return;
                if (next > cp)
                        next = cp;
        }
        if (fh_offsets_get(&d->stored, topic, partition) == next)
                return;
        fh_offsets_add(&d->stored, topic, partition, next);
        rd_kafka_topic_partition_list_add(b->list, topic, partition)->offset = next;
}

/* Stores the offsets whose alerts are all delivered and whose state is in
 * the last checkpoint; librdkafka commits stored offsets on its
 * auto-commit interval and at close. leaving: partitions being revoked. */
static void store_offsets(fh_daemon *d, const rd_kafka_topic_partition_list_t *leaving) {
        offset_batch b = { d, leaving, rd_kafka_topic_partition_list_new(8) };

        fh_tracker_foreach_committable(d->tracker, add_offset, &b);
        if (b.list->cnt > 0 && d->consumer) {
                rd_kafka_resp_err_t err = rd_kafka_offsets_store(d->consumer, b.list);
                /* A partition revoked meanwhile refuses its offset: fine. */
                if (err && err != RD_KAFKA_RESP_ERR__STATE)
                        log_debug("offsets store: %s", rd_kafka_err2str(err));
        }
        rd_kafka_topic_partition_list_destroy(b.list);
}

static void on_commit_timer(uv_timer_t *h) {
        fh_daemon *d = h->data;

        checkpoint_reap(d, false);
        store_offsets(d, NULL);
        /* Redis answers release readings too, without a Kafka wake-up. */
        check_flow(d);
        /* The ping comes from a loop timer, so a stalled loop stops it and
         * systemd restarts the daemon. */
        if (d->watchdog_usec && uv_now(d->loop) - d->watchdog_last >= d->watchdog_usec / 4000) {
                sd_notify(0, "WATCHDOG=1");
                d->watchdog_last = uv_now(d->loop);
        }
}

/* ---- Kafka callbacks (run inside rd_kafka_*_poll, on the loop thread) ---- */

static void on_retry_timer(uv_timer_t *h) {
        fh_daemon *d = h->data;
        fh_out *list = d->retry;

        d->retry = NULL;
        while (list) {
                fh_out *o = list;
                list = o->retry_next;
                o->in_retry = false;
                kafka_produce(d, o);
        }
        if (d->retry)
                uv_timer_start(&d->retry_timer, on_retry_timer, 5000, 0);
}

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
        fh_daemon *d = opaque;
        fh_out *o = m->_private;

        (void) rk;
        if (d->cfg.state_topic && !strcmp(rd_kafka_topic_name(m->rkt), d->cfg.state_topic)) {
                handover_delivered(d, m->_private, m->err);
                return;
        }
        if (m->err) {
                /* message.timeout.ms is infinite, so this is an error retries
                 * cannot fix (authorisation, a record too large, the topic
                 * gone). Keep the item, its reading uncommitted, and try
                 * again; consumption pauses once too much waits. */
                d->delivery_errors++;
                log_err("failed to deliver to Kafka topic %s: %s; will retry, its reading stays uncommitted",
                        rd_kafka_topic_name(m->rkt), rd_kafka_err2str(m->err));
                if (!o->in_retry) {
                        o->in_retry = true;
                        o->retry_next = d->retry;
                        d->retry = o;
                }
                if (!uv_is_active((uv_handle_t *) &d->retry_timer))
                        uv_timer_start(&d->retry_timer, on_retry_timer, 5000, 0);
                return;
        }
        if (o->it.kind == FH_OUT_ALERT) {
                int64_t cur = fh_offsets_get(&d->watermarks, d->cfg.alerts_topic, m->partition);
                if (m->offset + 1 > cur)
                        fh_offsets_add(&d->watermarks, d->cfg.alerts_topic, m->partition, m->offset + 1);
        }
        out_confirm(o, FH_SINK_KAFKA);
}

static void on_kafka_error(rd_kafka_t *rk, int err, const char *reason, void *opaque) {
        fh_daemon *d = opaque;

        if (err == RD_KAFKA_RESP_ERR__FATAL) {
                char buf[512];
                rd_kafka_fatal_error(rk, buf, sizeof(buf));
                log_err("Kafka fatal error: %s; stopping", buf);
                d->exit_code = 1;
                fh_daemon_stop(d);
                return;
        }
        /* Broker down, all brokers down: librdkafka retries by itself. */
        log_warning("Kafka %s: %s: %s", rd_kafka_name(rk), rd_kafka_err2name(err), reason);
}

static uint16_t slot_of(fh_daemon *d, const char *topic, int32_t partition, bool create) {
        for (size_t i = 1; i < d->n_slots; i++)
                if (d->slots[i].partition == partition && !strcmp(d->slots[i].topic, topic))
                        return (uint16_t) i;
        if (!create || d->n_slots >= UINT16_MAX)
                return 0;
        if (d->n_slots == 0)
                d->n_slots = 1;  /* slot 0 means "none" */
        d->slots = fh_realloc(d->slots, (d->n_slots + 1) * sizeof(*d->slots));
        d->slots[d->n_slots] = (fh_offset) { fh_strdup(topic), partition, 0 };
        return (uint16_t) d->n_slots++;
}

typedef struct slot_filter {
        const fh_daemon *d;
        uint16_t slot;
} slot_filter;

static bool in_slot(void *userdata, const fh_station *st) {
        const slot_filter *f = userdata;
        return f->d->sensor_slot[st->index] == f->slot;
}

static void mark_slot(void *userdata, const fh_station *st) {
        slot_filter *f = userdata;
        ((fh_daemon *) f->d)->sensor_slot[st->index] = f->slot;
}

/* The generation of a new hand-over: after every one this instance has
 * taken over, so that even with clocks apart a chain of hand-overs of one
 * partition keeps growing; wall time otherwise, so that a restarted
 * instance does not start below what it wrote before. */
static uint64_t next_generation(fh_daemon *d) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        uint64_t g = (uint64_t) ts.tv_sec * 1000000u + (uint64_t) ts.tv_nsec / 1000u;
        if (g <= d->max_generation)
                g = d->max_generation + 1;
        d->max_generation = g;
        return g;
}

/* A revoked partition's sensors leave this instance. */
static void handover_forget(fh_daemon *d, handover *h) {
        slot_filter f = { d, h->slot };

        fh_engine_forget(d->engine, in_slot, &f);
        for (size_t s = 0; s < fh_engine_registry(d->engine)->n_stations; s++)
                if (d->sensor_slot[s] == h->slot)
                        d->sensor_slot[s] = 0;
}

static bool assigned(const fh_daemon *d, const char *topic, int32_t partition) {
        for (int i = 0; d->assignment && i < d->assignment->cnt; i++)
                if (d->assignment->elems[i].partition == partition && !strcmp(d->assignment->elems[i].topic, topic))
                        return true;
        return false;
}

/* A chunk's delivery report. */
static void handover_delivered(fh_daemon *d, handover *h, rd_kafka_resp_err_t err) {
        if (err) {
                if (!h->failed)
                        log_err("rebalance: state record for %s [%d] not delivered to %s: %s; its state stays here",
                                h->topic, h->partition, d->cfg.state_topic, rd_kafka_err2str(err));
                h->failed = true;
        }
        if (--h->pending > 0 || !h->settled)
                return;
        /* Confirmed after the rebalance stopped waiting: forget the state
         * now, unless the partition has come back meanwhile. */
        if (!h->failed && !assigned(d, h->topic, h->partition) && slot_of(d, h->topic, h->partition, false) == h->slot) {
                handover_forget(d, h);
                log_info("rebalance: hand-over of %s [%d] confirmed late; its state is forgotten here", h->topic,
                         h->partition);
        }
        h->settled = false;
        h->pending = SIZE_MAX;  /* done: freed with the daemon */
}

/* A revoked partition's state, snapshotted and queued to the state topic
 * in chunks; NULL when nothing was read from it here. */
static handover *handover_produce(fh_daemon *d, const char *topic, int32_t p) {
        char base[512], key[600];
        fh_buf snap = FH_BUF_NULL, rec = FH_BUF_NULL, chunk = FH_BUF_NULL;
        uint16_t slot = slot_of(d, topic, p, false);
        int64_t pos = fh_tracker_processed(d->tracker, topic, p);
        slot_filter f = { d, slot };

        /* Nothing processed in this assignment: the state is still the
         * one it started from (a state file's or a hand-over's), at the
         * position it started at. Handed over all the same, or the next
         * owner would start without it. */
        if (pos < 0)
                pos = fh_offsets_get(&d->carried, topic, p);
        if (slot == 0 || pos < 0)
                return NULL;
        fh_engine_snapshot(d->engine, in_slot, &f, &snap);
        fh_handoff_encode(&rec, pos, &d->watermarks, snap.data, snap.len);
        fh_buf_free(&snap);
        fh_handoff_key(base, sizeof(base), d->cfg.group_id, topic, p);

        handover *h = fh_calloc(1, sizeof(*h));
        *h = (handover) { .next = d->handovers, .topic = fh_strdup(topic), .partition = p, .slot = slot,
                          .pos = pos, .bytes = rec.len };
        d->handovers = h;
        uint64_t gen = next_generation(d), sum = fh_handoff_record_sum(rec.data, rec.len);
        size_t n = fh_handoff_chunk_count(rec.len);
        for (size_t c = 0; c < n && !h->failed; c++) {
                fh_buf_reset(&chunk);
                fh_handoff_chunk_encode(&chunk, gen, c, rec.data, rec.len, sum);
                fh_handoff_chunk_key(key, sizeof(key), base, c);
                rd_kafka_resp_err_t e = rd_kafka_producev(d->producer, RD_KAFKA_V_TOPIC(d->cfg.state_topic),
                                                          RD_KAFKA_V_KEY(key, strlen(key)),
                                                          RD_KAFKA_V_VALUE(chunk.data, chunk.len),
                                                          RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                                          RD_KAFKA_V_OPAQUE(h), RD_KAFKA_V_END);
                if (e) {
                        log_err("rebalance: cannot hand over %s [%d]: %s; its state stays here", topic, p,
                                rd_kafka_err2str(e));
                        h->failed = true;
                } else
                        h->pending++;
        }
        h->chunks = n;
        fh_buf_free(&rec);
        fh_buf_free(&chunk);
        return h;
}

/* The rebalance stops waiting for h: forget its state when every chunk is
 * confirmed, else keep it (and let a late confirmation decide). */
static void handover_settle(fh_daemon *d, handover *h) {
        if (h->pending > 0 && h->pending != SIZE_MAX) {
                log_err("rebalance: hand-over of %s [%d] not confirmed yet; its state stays here until it is", h->topic,
                        h->partition);
                h->settled = true;
                return;
        }
        h->pending = SIZE_MAX;
        if (h->failed)
                return;
        handover_forget(d, h);
        log_info("rebalance: handed over %s [%d] at offset %lld (%zu bytes of state in %zu chunks)", h->topic,
                 h->partition, (long long) h->pos, h->bytes, h->chunks);
}

/* Revoked, while the loop is not running (the consumer's close): every
 * alert of these partitions confirmed by Kafka first, then their sensors'
 * state handed over, waiting here. */
static void handoff_save_now(fh_daemon *d, rd_kafka_topic_partition_list_t *parts) {
        handover **hs = fh_calloc((size_t) parts->cnt + 1, sizeof(*hs));
        size_t nh = 0;

        if (d->producer && rd_kafka_flush(d->producer, 10000) != RD_KAFKA_RESP_ERR_NO_ERROR)
                log_err("rebalance: %d messages still unconfirmed by Kafka after 10 s", rd_kafka_outq_len(d->producer));
        for (int i = 0; i < parts->cnt; i++) {
                handover *h = handover_produce(d, parts->elems[i].topic, parts->elems[i].partition);
                if (h)
                        hs[nh++] = h;
        }
        if (nh > 0 && rd_kafka_flush(d->producer, 10000) != RD_KAFKA_RESP_ERR_NO_ERROR)
                log_err("rebalance: state records not confirmed by Kafka within 10 s");
        for (size_t i = 0; i < nh; i++)
                handover_settle(d, hs[i]);
        free(hs);
}

typedef struct slot_set {
        const fh_daemon *d;
        const bool *slots;       /* indexed by slot */
} slot_set;

static bool sensor_in_slots(void *userdata, const void *key, size_t len) {
        const slot_set *ss = userdata;
        const fh_station *st = key ? fh_registry_find(fh_engine_registry(ss->d->engine), key, len) : NULL;
        uint16_t slot = st ? ss->d->sensor_slot[st->index] : 0;
        return slot != 0 && (!ss->slots || ss->slots[slot]);
}

/* Removes the partitions of parts from o. */
static void offsets_drop(fh_offsets *o, const rd_kafka_topic_partition_list_t *parts) {
        fh_offsets keep = { 0 };

        for (size_t i = 0; i < o->n; i++) {
                bool listed = false;
                for (int k = 0; k < parts->cnt && !listed; k++)
                        listed = parts->elems[k].partition == o->v[i].partition &&
                                 !strcmp(parts->elems[k].topic, o->v[i].topic);
                if (!listed)
                        fh_offsets_add(&keep, o->v[i].topic, o->v[i].partition, o->v[i].offset);
        }
        fh_offsets_clear(o);
        *o = keep;
}

/* ---- rebalances, off the loop ----
 *
 * librdkafka lets the application call assign() after its rebalance
 * callback has returned (the group waits, within max.poll.interval.ms),
 * so nothing slow happens inside the callback: an assignment's hand-overs
 * are read and the alerts topic scanned on a worker thread, a revocation
 * waits for Kafka's confirmations from a loop timer; assign() or
 * unassign() comes at the end. Meanwhile the loop goes on with the
 * watchdog, Redis, delivery reports and signals. With the eager protocol
 * the daemon uses, nothing is assigned between a revocation and the next
 * assignment, so nothing is consumed then; ticks wait too, so that the
 * state handed over is the state at the revocation. A reload waits for the
 * rebalance (the workers read the engine's registry). */

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

static void rebalance_free(fh_daemon *d, rebalance *rb) {
        for (int i = 0; rb->keys && i < rb->parts->cnt; i++) {
                free(rb->keys[i]);
                fh_buf_free(&rb->values[i]);
        }
        free(rb->keys);
        free(rb->values);
        free(rb->found);
        free(rb->gens);
        fh_offsets_clear(&rb->scan);
        free(rb->taken);
        fh_strset_free(rb->seen);
        free(rb->hs);
        rd_kafka_topic_partition_list_destroy(rb->parts);
        free(rb);
        if (d->rebalance == rb)
                d->rebalance = NULL;
}

/* The end of every rebalance: what waited for it goes on. */
static void rebalance_done(fh_daemon *d) {
        if (d->stopping)
                return;
        uv_idle_start(&d->drain_idle, on_drain_idle);
        if (d->reload_again && !d->reloading) {
                d->reload_again = false;
                reload(d);
        }
}

static void assign_now(fh_daemon *d, rd_kafka_topic_partition_list_t *parts) {
        for (int i = 0; i < parts->cnt; i++) {
                int64_t off = fh_offsets_get(&d->resume, parts->elems[i].topic, parts->elems[i].partition);
                if (off >= 0 && off > parts->elems[i].offset)
                        parts->elems[i].offset = off;
        }
        offsets_drop(&d->resume, parts);
        offsets_drop(&d->carried, parts);
        offsets_drop(&d->eof, parts);
        for (int i = 0; i < parts->cnt; i++)
                if (parts->elems[i].offset >= 0)
                        fh_offsets_add(&d->carried, parts->elems[i].topic, parts->elems[i].partition,
                                       parts->elems[i].offset);
        rd_kafka_resp_err_t e = rd_kafka_assign(d->consumer, parts);
        if (e)
                log_err("rebalance: assign: %s", rd_kafka_err2str(e));
        if (d->assignment)
                rd_kafka_topic_partition_list_destroy(d->assignment);
        d->assignment = rd_kafka_topic_partition_list_copy(parts);
        log_info("partitions assigned count=%d", parts->cnt);
        if (d->paused)
                rd_kafka_pause_partitions(d->consumer, d->assignment);
}

static void assign_fetch(uv_work_t *req) {
        rebalance *rb = req->data;
        const fh_daemon *d = rb->ss.d;

        rb->r = fh_handoff_fetch(&d->cfg, d->cfg.state_topic, (const char *const *) rb->keys, (size_t) rb->parts->cnt,
                                 rb->values, rb->found, rb->gens, 60000, rb->err, sizeof(rb->err));
}

static void assign_scan(uv_work_t *req) {
        rebalance *rb = req->data;
        const fh_daemon *d = rb->ss.d;

        rb->scanned = fh_kafka_scan_alerts(&d->cfg, d->cfg.alerts_topic, &rb->scan, sensor_in_slots, &rb->ss, rb->seen,
                                           30000, rb->err, sizeof(rb->err));
}

/* Sensors restored for an assignment that did not happen leave again. */
static void assign_undo(fh_daemon *d, rebalance *rb) {
        for (size_t s = 1; rb->taken && s <= UINT16_MAX; s++)
                if (rb->taken[s]) {
                        handover h = { .slot = (uint16_t) s };
                        handover_forget(d, &h);
                }
}

static void assign_scanned(uv_work_t *req, int status) {
        rebalance *rb = req->data;
        fh_daemon *d = (fh_daemon *) rb->ss.d;

        rb->in_worker = false;
        if (status < 0 || rb->cancelled || d->stopping) {
                assign_undo(d, rb);
                rebalance_free(d, rb);
                rebalance_done(d);
                return;
        }
        if (rb->scanned < 0)
                log_err("rebalance: cannot read back %s: %s; some alerts may be published twice", d->cfg.alerts_topic,
                        rb->err);
        if (!d->suppress)
                d->suppress = fh_strset_new();
        fh_strset_move(d->suppress, rb->seen);
        for (size_t k = 0; k < rb->scan.n; k++) {
                int64_t cur = fh_offsets_get(&d->scan_from, rb->scan.v[k].topic, rb->scan.v[k].partition);
                if (cur < 0 || rb->scan.v[k].offset < cur)
                        fh_offsets_add(&d->scan_from, rb->scan.v[k].topic, rb->scan.v[k].partition, rb->scan.v[k].offset);
        }
        assign_now(d, rb->parts);
        rebalance_free(d, rb);
        rebalance_done(d);
}

/* Restores partition i's hand-over, if any. */
static void assign_restore(fh_daemon *d, rebalance *rb, int i) {
        rd_kafka_topic_partition_list_t *parts = rb->parts;
        int64_t pos;
        fh_offsets wm = { 0 };
        const void *snap;
        size_t snap_len;
        const char *topic = parts->elems[i].topic;
        int32_t p = parts->elems[i].partition;

        if (!rb->found[i])
                return;
        if (rb->gens[i] > d->max_generation)
                d->max_generation = rb->gens[i];
        if (fh_handoff_decode(rb->values[i].data, rb->values[i].len, &pos, &wm, &snap, &snap_len) < 0) {
                log_err("rebalance: the state record for %s [%d] is corrupt; starting from the committed offset", topic,
                        p);
                return;
        }
        /* A newer position of our own (from the local state file) wins
         * over an older hand-over. */
        int64_t own = fh_offsets_get(&d->resume, topic, p);
        if (own >= pos) {
                fh_offsets_clear(&wm);
                return;
        }
        slot_filter f = { d, slot_of(d, topic, p, true) };
        rb->taken[f.slot] = true;
        if (fh_engine_restore_each(d->engine, snap, snap_len, mark_slot, &f) < 0) {
                log_err("rebalance: the state snapshot for %s [%d] is corrupt", topic, p);
                fh_offsets_clear(&wm);
                return;
        }
        parts->elems[i].offset = pos;
        for (size_t k = 0; k < wm.n; k++) {
                int64_t cur = fh_offsets_get(&rb->scan, wm.v[k].topic, wm.v[k].partition);
                if (cur < 0 || wm.v[k].offset < cur)
                        fh_offsets_add(&rb->scan, wm.v[k].topic, wm.v[k].partition, wm.v[k].offset);
        }
        fh_offsets_clear(&wm);
        fh_buf_free(&rb->values[i]);
        log_info("rebalance: took over %s [%d] at offset %lld", topic, p, (long long) pos);
}

/* One partition's restore per call, so that a large registry's
 * hand-overs do not add up into one stall; then the read-back of the
 * alerts topic on a worker, or the assign. */
static void on_assign_step(uv_timer_t *t) {
        fh_daemon *d = t->data;
        rebalance *rb = d->rebalance;

        if (!rb || !rb->assign)
                return;
        if (d->stopping) {
                uv_timer_stop(&d->rebalance_timer);
                rebalance_free(d, rb);
                return;
        }
        if (rb->r == 0 && rb->next < rb->parts->cnt) {
                assign_restore(d, rb, rb->next++);
                return;
        }
        uv_timer_stop(&d->rebalance_timer);
        /* Alerts the previous owners published that we will regenerate. */
        if (rb->scan.n > 0 && d->cfg.alerts_topic) {
                rb->seen = fh_strset_new();
                rb->ss.slots = rb->taken;
                rb->in_worker = true;
                uv_queue_work(d->loop, &rb->req, assign_scan, assign_scanned);
                return;
        }
        assign_now(d, rb->parts);
        rebalance_free(d, rb);
        rebalance_done(d);
}

/* Assigned: take over what the previous owners handed over. */
static void assign_fetched(uv_work_t *req, int status) {
        rebalance *rb = req->data;
        fh_daemon *d = (fh_daemon *) rb->ss.d;

        rb->in_worker = false;
        if (status < 0 || rb->cancelled || d->stopping) {
                rebalance_free(d, rb);
                rebalance_done(d);
                return;
        }
        if (rb->r < 0)
                log_err("rebalance: cannot read handed-over state from %s: %s", d->cfg.state_topic, rb->err);
        rb->taken = fh_calloc(UINT16_MAX + 1, sizeof(*rb->taken));
        rb->next = 0;
        uv_timer_start(&d->rebalance_timer, on_assign_step, 0, 1);
}

static void assign_start(fh_daemon *d, rd_kafka_topic_partition_list_t *parts) {
        rebalance *rb = fh_calloc(1, sizeof(*rb));
        size_t n = (size_t) parts->cnt;

        rb->assign = true;
        rb->parts = rd_kafka_topic_partition_list_copy(parts);
        rb->ss.d = d;
        rb->keys = fh_calloc(n + 1, sizeof(*rb->keys));
        rb->values = fh_calloc(n + 1, sizeof(*rb->values));
        rb->found = fh_calloc(n + 1, sizeof(*rb->found));
        rb->gens = fh_calloc(n + 1, sizeof(*rb->gens));
        for (size_t i = 0; i < n; i++) {
                rb->keys[i] = fh_malloc(512);
                fh_handoff_key(rb->keys[i], 512, d->cfg.group_id, parts->elems[i].topic, parts->elems[i].partition);
        }
        rb->req.data = rb;
        rb->in_worker = true;
        d->rebalance = rb;
        uv_queue_work(d->loop, &rb->req, assign_fetch, assign_fetched);
}

static bool revoking(const fh_daemon *d) {
        return d->rebalance && !d->rebalance->assign;
}

static void revoke_now(fh_daemon *d, rd_kafka_topic_partition_list_t *parts) {
        store_offsets(d, parts);
        /* On the loop, asynchronously: a synchronous commit waits for the
         * coordinator, for as long as it does not answer. The commit goes
         * out before the unassign and the next join, in that order. */
        rd_kafka_commit(d->consumer, NULL, d->stopping ? 0 : 1);
        for (int i = 0; i < parts->cnt; i++)
                fh_tracker_forget(d->tracker, parts->elems[i].topic, parts->elems[i].partition);
        offsets_drop(&d->carried, parts);
        offsets_drop(&d->eof, parts);
        offsets_drop(&d->stored, parts);
        /* revoke_start paused them, and librdkafka keeps a partition's
         * pause across an unassign: should it come back here, it must
         * not stay paused (nor be resumed right after the assign, which
         * can lose the assigned offset: librdkafka issue 2190). */
        if (!d->paused)
                rd_kafka_resume_partitions(d->consumer, parts);
        rd_kafka_assign(d->consumer, NULL);
        if (d->assignment)
                rd_kafka_topic_partition_list_destroy(d->assignment);
        d->assignment = NULL;
        log_info("partitions revoked count=%d", parts->cnt);
}

/* A revocation, one step per timer call: (0) wait until Kafka confirmed
 * every alert (at most 10 s), (1) one partition's hand-over queued per call,
 * so that a large registry's snapshots do not add up into one stall, (2)
 * wait for the chunks' confirmations (at most 10 s), (3) settle one
 * partition per call, then commit and unassign. */
static void on_revoke_step(uv_timer_t *t) {
        fh_daemon *d = t->data;
        rebalance *rb = d->rebalance;

        if (!rb || rb->assign)
                return;
        switch (rb->step) {
        case 0:
                if (d->producer && rd_kafka_outq_len(d->producer) > 0 && uv_now(d->loop) < rb->deadline)
                        return;
                if (d->producer && rd_kafka_outq_len(d->producer) > 0)
                        log_err("rebalance: %d messages still unconfirmed by Kafka after 10 s",
                                rd_kafka_outq_len(d->producer));
                rb->step = 1;
                return;
        case 1:
                if (rb->next < rb->parts->cnt) {
                        handover *h = handover_produce(d, rb->parts->elems[rb->next].topic,
                                                       rb->parts->elems[rb->next].partition);
                        rb->next++;
                        if (h)
                                rb->hs[rb->nh++] = h;
                        return;
                }
                rb->step = 2;
                rb->deadline = uv_now(d->loop) + 10000;
                return;
        case 2:
                for (size_t i = 0; i < rb->nh; i++)
                        if (rb->hs[i]->pending > 0 && uv_now(d->loop) < rb->deadline)
                                return;
                rb->step = 3;
                rb->next = 0;
                return;
        default:
                /* Forgetting a partition's sensors frees their windows:
                 * one partition per call too. */
                if ((size_t) rb->next < rb->nh) {
                        handover_settle(d, rb->hs[rb->next++]);
                        return;
                }
                uv_timer_stop(&d->rebalance_timer);
                revoke_now(d, rb->parts);
                rebalance_free(d, rb);
                rebalance_done(d);
        }
}

/* Stopping in the middle of a revocation: the rest of its steps,
 * waiting here. */
static void revoke_finish_now(fh_daemon *d, rebalance *rb) {
        size_t from = 0;

        uv_timer_stop(&d->rebalance_timer);
        if (rb->step == 0 && d->producer && rd_kafka_flush(d->producer, 10000) != RD_KAFKA_RESP_ERR_NO_ERROR)
                log_err("rebalance: %d messages still unconfirmed by Kafka after 10 s", rd_kafka_outq_len(d->producer));
        if (rb->step <= 1)
                for (; rb->next < rb->parts->cnt; rb->next++) {
                        handover *h = handover_produce(d, rb->parts->elems[rb->next].topic,
                                                       rb->parts->elems[rb->next].partition);
                        if (h)
                                rb->hs[rb->nh++] = h;
                }
        if (rb->step <= 2 && rb->nh > 0 && rd_kafka_flush(d->producer, 10000) != RD_KAFKA_RESP_ERR_NO_ERROR)
                log_err("rebalance: state records not confirmed by Kafka within 10 s");
        if (rb->step == 3)
                from = (size_t) rb->next;   /* those before are settled */
        for (size_t i = from; i < rb->nh; i++)
                handover_settle(d, rb->hs[i]);
        revoke_now(d, rb->parts);
        rebalance_free(d, rb);
}

static void revoke_start(fh_daemon *d, rd_kafka_topic_partition_list_t *parts) {
        rebalance *rb = fh_calloc(1, sizeof(*rb));

        rb->parts = rd_kafka_topic_partition_list_copy(parts);
        rb->hs = fh_calloc((size_t) parts->cnt + 1, sizeof(*rb->hs));
        rb->deadline = uv_now(d->loop) + 10000;
        d->rebalance = rb;
        /* Still assigned until the unassign: fetched messages of these
         * partitions are not processed (drain_consumer), so fetch no more. */
        rd_kafka_pause_partitions(d->consumer, parts);
        uv_timer_start(&d->rebalance_timer, on_revoke_step, 0, 20);
}

static void on_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t *parts, void *opaque) {
        fh_daemon *d = opaque;

        (void) rk;
        if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
                if (d->rebalance)
                        /* Not expected: librdkafka waits for our answer to the
                         * previous one. Answer this one as it is. */
                        log_warning("rebalance: an assignment before the previous rebalance finished");
                if (d->cfg.state_topic && !d->stopping && !d->rebalance)
                        assign_start(d, parts);
                else
                        assign_now(d, parts);
                return;
        }
        if (d->rebalance && d->rebalance->assign) {
                /* The assignment being prepared never happened: its
                 * sensors leave again (once its worker is done). */
                rebalance *rb = d->rebalance;
                d->rebalance = NULL;
                if (rb->in_worker)
                        rb->cancelled = true;
                else {
                        uv_timer_stop(&d->rebalance_timer);
                        assign_undo(d, rb);
                        rebalance_free(d, rb);
                }
        }
        if (d->rebalance) {
                /* A revocation is already under way: this one is the same. */
                return;
        }
        if (d->cfg.state_topic && !d->stopping)
                revoke_start(d, parts);
        else {
                /* The consumer's close, after the loop has ended: wait here. */
                if (d->cfg.state_topic)
                        handoff_save_now(d, parts);
                revoke_now(d, parts);
        }
}

static int set_prop(rd_kafka_conf_t *conf, const char *k, const char *v) {
        char err[512];
        if (fh_kafka_conf_set(conf, k, v, err, sizeof(err)) < 0) {
                /* Never the value: a mistyped key may hold a password. */
                log_err("bad Kafka property '%s': %s", k, err);
                return -EINVAL;
        }
        return 0;
}

/* The daemon's tunables first, so the user's properties may change them;
 * the settings its guarantees rest on are set by the caller after the
 * user's, and the configuration refuses them (fh_kafka_prop_guarded). */
static rd_kafka_conf_t *base_conf(fh_daemon *d, const char *const *tunables, const fh_kvs *extra) {
        rd_kafka_conf_t *conf = rd_kafka_conf_new();
        int r = 0;

        for (size_t i = 0; tunables[i]; i += 2)
                r |= set_prop(conf, tunables[i], tunables[i + 1]);
        r |= set_prop(conf, "bootstrap.servers", d->cfg.brokers);
        rd_kafka_conf_set_opaque(conf, d);
        rd_kafka_conf_set_error_cb(conf, on_kafka_error);
        for (size_t i = 0; i < d->cfg.kafka_props.n; i++)
                r |= set_prop(conf, d->cfg.kafka_props.v[i].key, d->cfg.kafka_props.v[i].value);
        for (size_t i = 0; i < extra->n; i++)
                r |= set_prop(conf, extra->v[i].key, extra->v[i].value);
        if (r) {
                rd_kafka_conf_destroy(conf);
                return NULL;
        }
        return conf;
}

/* Creates both clients; nothing is on the loop yet, so a failure here is
 * undone by fh_daemon_free() alone. */
static int kafka_start(fh_daemon *d) {
        static const char *const producer_tunables[] = {
                /* Alerts are few and every millisecond counts: no batching delay. */
                "linger.ms", "0",
                "queue.buffering.max.messages", "2000000",
                NULL,
        };
        static const char *const consumer_tunables[] = {
                /* librdkafka 2.0 stops prefetching at 100,000 queued messages and
                 * looks again only a second later: with a loop that drains in
                 * batches that caps a partition at one fetch a second. */
                "queued.min.messages", "1000000",
                NULL,
        };
        char err[512];
        rd_kafka_conf_t *conf;

        if (d->cfg.alerts_topic || d->cfg.dead_letter_topic) {
                conf = base_conf(d, producer_tunables, &d->cfg.producer_props);
                if (!conf)
                        return -EINVAL;
                /* An alert is never given up on: it waits as long as Kafka
                 * is away, and consumption pauses behind it. */
                if (set_prop(conf, "enable.idempotence", "true") < 0 ||
                    set_prop(conf, "message.timeout.ms", "0") < 0) {
                        rd_kafka_conf_destroy(conf);
                        return -EINVAL;
                }
                rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
                d->producer = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
                if (!d->producer) {
                        /* Only a successful rd_kafka_new() takes conf. What
                         * it refuses here (a certificate file, a SASL
                         * mechanism) is configuration: -EINVAL. */
                        rd_kafka_conf_destroy(conf);
                        log_err("failed to create Kafka producer: %s", err);
                        return -EINVAL;
                }
                /* conf is now owned by the producer */
                d->pq = rd_kafka_queue_get_main(d->producer);
        }

        conf = base_conf(d, consumer_tunables, &d->cfg.consumer_props);
        if (!conf)
                return -EINVAL;
        if (set_prop(conf, "group.id", d->cfg.group_id) < 0 ||
            set_prop(conf, "enable.auto.offset.store", "false") < 0 ||
            /* The end of a partition is a position too: the lag after a
             * restart with nothing new to read. */
            set_prop(conf, "enable.partition.eof", "true") < 0 ||
            set_prop(conf, "auto.offset.reset", "earliest") < 0) {
                rd_kafka_conf_destroy(conf);
                return -EINVAL;
        }
        rd_kafka_conf_set_rebalance_cb(conf, on_rebalance);
        d->consumer = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err));
        if (!d->consumer) {
                rd_kafka_conf_destroy(conf);
                log_err("failed to create Kafka consumer: %s", err);
                return -EINVAL;
        }
        /* conf is now owned by the consumer */
        rd_kafka_poll_set_consumer(d->consumer);
        d->cq = rd_kafka_queue_get_consumer(d->consumer);
        return 0;
}

/* Runs on the loop: the rebalance callback it triggers needs everything. */
static int kafka_subscribe(fh_daemon *d) {
        rd_kafka_topic_partition_list_t *topics = rd_kafka_topic_partition_list_new(FH_KIND__MAX);
        for (int k = 0; k < FH_KIND__MAX; k++)
                if (d->cfg.topics[k])
                        rd_kafka_topic_partition_list_add(topics, d->cfg.topics[k], RD_KAFKA_PARTITION_UA);
        rd_kafka_resp_err_t e = rd_kafka_subscribe(d->consumer, topics);
        rd_kafka_topic_partition_list_destroy(topics);
        if (e) {
                log_err("failed to subscribe: %s", rd_kafka_err2str(e));
                return -EINVAL;
        }
        return 0;
}

/* ---- ticks, checkpoints, stats ---- */

static void on_tick(uv_timer_t *h) {
        fh_daemon *d = h->data;
        int64_t now = wall_ms(), t = d->cfg.tick_ms;

        if (d->frozen || revoking(d)) {
                /* A reload is reading the engine, or a revocation handing
                 * its state over; the boundaries passed meanwhile are
                 * evaluated afterwards. */
                uv_timer_start(&d->tick_timer, on_tick, 100, 0);
                return;
        }
        /* Boundaries follow wall time; a late timer still evaluates every
         * boundary it passed. */
        fh_engine_tick(d->engine, now);
        uv_timer_start(&d->tick_timer, on_tick, (uint64_t) ((fh_floor_div(now, t) + 1) * t - now), 0);
}

static void collect_all(void *userdata, const char *topic, int32_t partition, int64_t next) {
        fh_offsets_add(userdata, topic, partition, next);
}

/* A consistent cut: the engine's state holds every reading handed to it,
 * so it goes with the positions after the last message processed, and
 * with everything produced but not confirmed yet (the outbox): a restart
 * re-sends the outbox and replays from the positions. Taken in one loop
 * callback, so nothing moves in between. The outbox entries borrow the
 * live items' strings: checkpoint_cut_free drops only the array. */
static void checkpoint_cut(fh_daemon *d, fh_checkpoint *c) {
        const fh_offsets *wm;

        *c = (fh_checkpoint) { 0 };
        fh_tracker_foreach_processed(d->tracker, collect_all, &c->positions);
        for (int k = 0; k < 2; k++) {
                const fh_offsets *o = k == 0 ? &d->carried : &d->resume;
                for (size_t i = 0; i < o->n; i++)
                        if (fh_offsets_get(&c->positions, o->v[i].topic, o->v[i].partition) < 0)
                                fh_offsets_add(&c->positions, o->v[i].topic, o->v[i].partition, o->v[i].offset);
        }
        /* While alerts from before a crash are still expected again, a new
         * crash must read them again too: keep the older scan start. */
        wm = d->suppress && fh_strset_size(d->suppress) > 0 ? &d->scan_from : &d->watermarks;
        for (size_t i = 0; i < wm->n; i++)
                fh_offsets_add(&c->watermarks, wm->v[i].topic, wm->v[i].partition, wm->v[i].offset);
        c->outbox = d->n_outs ? fh_calloc(d->n_outs, sizeof(*c->outbox)) : NULL;
        for (fh_out *o = d->outs.next; o != &d->outs; o = o->next) {
                fh_outbox_item *it = &c->outbox[c->n_outbox++];
                *it = o->it;
                it->sinks &= FH_SINK_KAFKA | FH_SINK_REDIS;
        }
        const fh_registry *reg = fh_engine_registry(d->engine);
        for (size_t i = 1; i < d->n_slots; i++)
                fh_offsets_add(&c->partitions, d->slots[i].topic, d->slots[i].partition, (int64_t) i);
        c->sensor_ids = fh_calloc(reg->n_stations + 1, sizeof(*c->sensor_ids));
        c->sensor_part = fh_calloc(reg->n_stations + 1, sizeof(*c->sensor_part));
        for (size_t i = 0; i < reg->n_stations; i++)
                if (d->sensor_slot[i]) {
                        /* partitions was filled in slot order: index = slot - 1 */
                        c->sensor_ids[c->n_sensors] = fh_strdup(reg->stations[i].id);
                        c->sensor_part[c->n_sensors++] = d->sensor_slot[i] - 1u;
                }
}

static void checkpoint_cut_free(fh_checkpoint *c) {
        free(c->outbox);
        c->outbox = NULL;
        c->n_outbox = 0;
        fh_checkpoint_clear(c);
}

/* The result of a checkpoint of the cut whose input positions are
 * *positions (taken): on success they are what may be committed. */
static void checkpoint_done(fh_daemon *d, int r, fh_offsets *positions) {
        if (r == 0) {
                fh_offsets_clear(&d->durable);
                d->durable = *positions;
                *positions = (fh_offsets) { 0 };
        } else
                fh_offsets_clear(positions);
        if (r < 0) {
                if (!d->checkpoint_failing)
                        log_err("cannot checkpoint state to %s/state: %s; alerting goes on without it",
                                d->cfg.state_dir, strerror(-r));
                d->checkpoint_failing = true;
        } else if (d->checkpoint_failing) {
                log_notice("checkpointing to %s works again", d->cfg.state_dir);
                d->checkpoint_failing = false;
        }
}

/* Collects the checkpoint child once it has ended (or waits for it). */
static void checkpoint_reap(fh_daemon *d, bool block) {
        int res = 0, w;

        if (!d->checkpoint_pid)
                return;
        w = fh_state_save_wait(d->checkpoint_pid, block, &res);
        if (w == 0)
                return;
        d->checkpoint_pid = 0;
        log_debug("checkpoint written in %.3f s", (double) (uv_hrtime() - d->checkpoint_t0) / 1e9);
        checkpoint_done(d, w < 0 ? w : res, &d->checkpoint_positions);
        if (d->checkpoint_again && !d->stopping) {
                d->checkpoint_again = false;
                checkpoint_start(d);
        }
}

/* The periodic checkpoint: the cut is taken here, serialising and fsync
 * happen in a forked child, so the loop pays only for the fork (and later
 * for the pages it writes while the child runs). One at a time: one asked
 * for while the previous file is still being written starts when it is. */
static void checkpoint_start(fh_daemon *d) {
        fh_checkpoint c;
        pid_t pid;
        int r;

        if (!d->cfg.state_dir)
                return;
        checkpoint_reap(d, false);
        if (d->checkpoint_pid) {
                if (!d->checkpoint_again)
                        log_warning("the previous checkpoint is still being written; this one follows it");
                d->checkpoint_again = true;
                return;
        }
        checkpoint_cut(d, &c);
        d->checkpoint_t0 = uv_hrtime();
        r = fh_state_save_fork(d->cfg.state_dir, d->engine, &c, &pid);
        if (r == 0) {
                d->checkpoint_pid = pid;
                d->checkpoint_positions = c.positions;
                c.positions = (fh_offsets) { 0 };
        } else {
                log_warning("cannot fork to write the checkpoint (%s); writing it on the loop", strerror(-r));
                checkpoint_done(d, fh_state_save(d->cfg.state_dir, d->engine, &c), &c.positions);
        }
        checkpoint_cut_free(&c);
}

/* A checkpoint written before returning, for the shutdown. */
static int checkpoint(fh_daemon *d) {
        fh_checkpoint c;
        int r;

        if (!d->cfg.state_dir)
                return 0;
        /* A child still writing an older cut must not rename it over this one. */
        checkpoint_reap(d, true);
        checkpoint_cut(d, &c);
        r = fh_state_save(d->cfg.state_dir, d->engine, &c);
        checkpoint_done(d, r, &c.positions);
        checkpoint_cut_free(&c);
        return r;
}

/* Once every assigned partition has been read up to where it ended when we
 * looked, everything this instance was going to regenerate has been: the
 * alerts still in the suppression set belong to other instances. */
static void drop_suppression_when_caught_up(fh_daemon *d) {
        if (!d->suppress || fh_strset_size(d->suppress) == 0 || !d->assignment || d->resume.n > 0)
                return;
        for (int i = 0; i < d->assignment->cnt; i++) {
                const char *topic = d->assignment->elems[i].topic;
                int32_t p = d->assignment->elems[i].partition;
                int64_t lo, hi;
                if (rd_kafka_get_watermark_offsets(d->consumer, topic, p, &lo, &hi) != RD_KAFKA_RESP_ERR_NO_ERROR ||
                    hi < 0)
                        return;
                int64_t pos = fh_tracker_processed(d->tracker, topic, p);
                if (hi > 0 && pos < hi)
                        return;
        }
        log_info("caught up: %zu alerts read back were not regenerated here; forgetting them",
                 fh_strset_size(d->suppress));
        d->suppress = fh_strset_free(d->suppress);
        fh_offsets_clear(&d->scan_from);
}

static void on_checkpoint(uv_timer_t *h) {
        drop_suppression_when_caught_up(h->data);
        checkpoint_start(h->data);
}

/* How far behind the input is: messages not yet processed in the assigned
 * partitions (from librdkafka's cached watermarks), -1 when not known.
 * A partition nothing was read from in this run is measured from where it
 * ended (EOF) or from where this run starts it; never from its low
 * watermark, which would count everything already committed. */
static long long consumer_lag(const fh_daemon *d) {
        long long lag = 0;

        if (!d->assignment || !d->consumer)
                return -1;
        for (int i = 0; i < d->assignment->cnt; i++) {
                const char *topic = d->assignment->elems[i].topic;
                int32_t p = d->assignment->elems[i].partition;
                int64_t lo, hi, pos;
                if (rd_kafka_get_watermark_offsets(d->consumer, topic, p, &lo, &hi) != RD_KAFKA_RESP_ERR_NO_ERROR ||
                    hi < 0)
                        return -1;
                pos = fh_tracker_processed(d->tracker, topic, p);
                int64_t end = fh_offsets_get(&d->eof, topic, p);
                if (end > pos)
                        pos = end;
                if (pos < 0)
                        pos = fh_offsets_get(&d->carried, topic, p);
                if (pos < 0)
                        return -1;
                if (hi > pos)
                        lag += hi - pos;
        }
        return lag;
}

/* This run's counts: those of the engines reloads replaced, plus the
 * current one's. */
static void stats_total(const fh_daemon *d, fh_engine_stats *restrict ret) {
        const fh_engine_stats *s = fh_engine_stats_get(d->engine);
        const fh_engine_stats *restrict b = &d->stats_before;

        *ret = *s;
        ret->accepted += b->accepted;
        ret->late += b->late;
        ret->duplicates += b->duplicates;
        ret->dropped += b->dropped;
        for (int i = 0; i < FH_REJECT__MAX; i++)
                ret->rejected[i] += b->rejected[i];
        for (int i = 0; i < FH_EVENT__MAX; i++)
                ret->events[i] += b->events[i];
        ret->evaluations += b->evaluations;
        ret->ticks_skipped += b->ticks_skipped;
}

static void metric_head(fh_buf *b, const char *name, const char *type, const char *help) {
        fh_buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void metric(fh_buf *b, const char *name, const char *type, const char *help, long long v) {
        metric_head(b, name, type, help);
        fh_buf_printf(b, "%s %lld\n", name, v);
}

/* The file is read by node_exporter, another user: 0644 whatever the
 * umask (the unit's is 0077), next to nothing secret. */
static int write_file_0644(const char *path, const void *data, size_t len) {
        char tmp[4096];
        int fd, r = 0;

        if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int) sizeof(tmp))
                return -ENAMETOOLONG;
        fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd < 0)
                return -errno;
        if (fchmod(fd, 0644) < 0 || write(fd, data, len) != (ssize_t) len)
                r = errno ? -errno : -EIO;
        if (close(fd) < 0 && r == 0)
                r = -errno;
        if (r == 0 && rename(tmp, path) < 0)
                r = -errno;
        if (r < 0)
                unlink(tmp);
        return r;
}

static void write_metrics(fh_daemon *d, const fh_engine_stats *s, long long lag, long long idle_s, long long behind_s) {
        fh_buf b = FH_BUF_NULL;
        int r;

        fh_buf_printf(&b, "# fenghuo metrics, Prometheus text format (node_exporter textfile collector)\n");
        metric(&b, "fenghuo_readings_consumed_total", "counter", "Messages read from the input topics.",
               (long long) d->consumed);
        metric(&b, "fenghuo_readings_accepted_total", "counter", "Readings that joined the windows, late ones included.",
               (long long) s->accepted);
        metric(&b, "fenghuo_readings_late_total", "counter", "Readings older than their sensor's latest, within lateness.",
               (long long) s->late);
        metric(&b, "fenghuo_readings_duplicate_total", "counter", "Readings whose timestamp their sensor already had.",
               (long long) s->duplicates);
        metric(&b, "fenghuo_readings_dropped_total", "counter", "Readings older than lateness allows.",
               (long long) s->dropped);
        metric_head(&b, "fenghuo_readings_rejected_total", "counter", "Readings sent to the dead letters, by reason.");
        for (int i = 1; i < FH_REJECT__MAX; i++)
                fh_buf_printf(&b, "fenghuo_readings_rejected_total{reason=\"%s\"} %llu\n", fh_reject_name((fh_reject) i),
                              (unsigned long long) s->rejected[i]);
        fh_buf_printf(&b, "fenghuo_readings_rejected_total{reason=\"future_timestamp\"} %llu\n",
                      (unsigned long long) d->future_rejected);
        metric_head(&b, "fenghuo_alerts_total", "counter", "Alert events published, by event.");
        for (int i = 0; i < FH_EVENT__MAX; i++)
                fh_buf_printf(&b, "fenghuo_alerts_total{event=\"%s\"} %llu\n", fh_event_name((fh_event) i),
                              (unsigned long long) s->events[i]);
        metric(&b, "fenghuo_alerts_in_flight", "gauge", "Alerts and dead letters not yet confirmed by every sink.",
               (long long) d->n_outs);
        metric(&b, "fenghuo_readings_pending", "gauge",
               "Readings processed but not yet committable (behind an alert not yet confirmed).",
               (long long) fh_tracker_pending(d->tracker));
        metric(&b, "fenghuo_consumer_lag_messages", "gauge",
               "Messages in the assigned partitions not processed yet; -1 when not known.", lag);
        metric(&b, "fenghuo_input_idle_seconds", "gauge", "Seconds since the last message was read; -1 before the first.",
               idle_s);
        metric(&b, "fenghuo_input_behind_seconds", "gauge",
               "Age of the newest accepted reading in seconds; -1 before the first.", behind_s);
        metric(&b, "fenghuo_consumption_paused", "gauge", "1 while consumption waits for the sinks.", d->paused);
        metric(&b, "fenghuo_redis_up", "gauge", "1 while the Redis connection is ready.",
               d->redis ? fh_redis_connected(d->redis) : 0);
        metric(&b, "fenghuo_redis_backlog", "gauge", "Alerts waiting for Redis.",
               d->redis ? (long long) fh_redis_backlog(d->redis) : 0);
        metric(&b, "fenghuo_checkpoint_failing", "gauge", "1 while state checkpoints fail.", d->checkpoint_failing);
        metric(&b, "fenghuo_kafka_delivery_errors_total", "counter", "Kafka deliveries that failed and are retried.",
               (long long) d->delivery_errors);

        r = write_file_0644(d->cfg.metrics_file, b.data, b.len);
        if (r < 0) {
                if (!d->metrics_failing)
                        log_warning("cannot write metrics to %s: %s", d->cfg.metrics_file, strerror(-r));
                d->metrics_failing = true;
        } else
                d->metrics_failing = false;
        fh_buf_free(&b);
}

static void log_stats(fh_daemon *d) {
        fh_engine_stats total;
        const fh_engine_stats *s = &total;
        unsigned long long rej = 0;
        int64_t now = wall_ms();
        long long lag = consumer_lag(d);
        long long idle_s = d->last_input_ms ? (long long) ((now - d->last_input_ms) / 1000) : -1LL;
        long long behind_s = d->newest_ts != FH_TIME_NONE ? (long long) ((now - d->newest_ts) / 1000) : -1LL;
        char reasons[512] = "";
        size_t off = 0;

        stats_total(d, &total);
        for (int i = 1; i < FH_REJECT__MAX; i++) {
                rej += s->rejected[i];
                if (s->rejected[i] && off < sizeof(reasons))
                        off += (size_t) snprintf(reasons + off, sizeof(reasons) - off, "%s%s:%llu", off ? "," : "",
                                                 fh_reject_name((fh_reject) i), (unsigned long long) s->rejected[i]);
        }
        log_info("stats consumed=%llu accepted=%llu late=%llu duplicates=%llu dropped=%llu rejected=%llu%s%s%s "
                 "future=%llu alerts=%llu in_flight=%zu pending=%zu lag=%lld behind_s=%lld redis=%s redis_backlog=%zu "
                 "paused=%s idle_s=%lld",
                 (unsigned long long) d->consumed, (unsigned long long) s->accepted,
                 (unsigned long long) s->late, (unsigned long long) s->duplicates,
                 (unsigned long long) s->dropped, rej, off ? " (" : "", reasons, off ? ")" : "",
                 (unsigned long long) d->future_rejected,
                 (unsigned long long) (s->events[0] + s->events[1] + s->events[2] + s->events[3]),
                 d->n_outs, fh_tracker_pending(d->tracker), lag, behind_s, d->redis ? (fh_redis_connected(d->redis) ? "up" : "down") : "off",
                 d->redis ? fh_redis_backlog(d->redis) : 0, d->paused ? "yes" : "no", idle_s);
        if (d->cfg.metrics_file)
                write_metrics(d, s, lag, idle_s, behind_s);
}

static void on_stats(uv_timer_t *h) {
        log_stats(h->data);
}

/* ---- reload ---- */

/* A reload runs in two steps off the loop (uv_queue_work), so that the
 * loop goes on answering the watchdog, Redis and Kafka's delivery reports:
 * 1. the new rules and registry are loaded into a new engine, while the
 *    old one goes on consuming;
 * 2. consumption and ticks stop (the old engine is frozen: the loop then
 *    only reads it, as the worker does), the old engine's state is carried
 *    into the new one by snapshot and restore, and the new one is swapped
 *    in on the loop, between two messages as before. */
typedef struct reload_job {
        uv_work_t req;
        fh_daemon *d;
        fh_engine_config ecfg;
        fh_engine *ne;
        fh_diags diags;
        int r;
        uint64_t t0, frozen_t0;
} reload_job;

typedef struct fh_engine_free_req {
        uv_work_t req;
        fh_engine *e;
} fh_engine_free_req;

static void engine_free_work(uv_work_t *req) {
        fh_engine_free_req *fr = req->data;
        fh_engine_free(fr->e);
}

static void engine_free_done(uv_work_t *req, int status) {
        (void) status;
        free(req->data);
}

static void reload_load(uv_work_t *req) {
        reload_job *j = req->data;
        j->r = fh_load_engine(j->d->cfg.rules, j->d->cfg.stations, &j->ecfg, &j->ne, &j->diags);
}

static void reload_carry(uv_work_t *req) {
        reload_job *j = req->data;
        fh_buf snap = FH_BUF_NULL;

        /* Carry windows and alert states across: rules that did not change
         * keep their state; changed ones start from none. */
        fh_engine_snapshot(j->d->engine, NULL, NULL, &snap);
        j->r = fh_engine_restore(j->ne, snap.data, snap.len);
        fh_buf_free(&snap);
}

static void reload_end(fh_daemon *d, reload_job *j) {
        fh_engine_free(j->ne);
        fh_diags_clear(&j->diags);
        free(j);
        d->reloading = false;
        if (d->frozen) {
                d->frozen = false;
                if (!d->stopping)
                        uv_idle_start(&d->drain_idle, on_drain_idle);
        }
        if (!d->stopping)
                sd_notify(0, "READY=1");
        if (d->reload_again && !d->stopping) {
                d->reload_again = false;
                reload(d);
        }
}

static void reload_swapped(uv_work_t *req, int status) {
        reload_job *j = req->data;
        fh_daemon *d = j->d;
        fh_engine *ne = j->ne;

        if (status < 0 || d->stopping) {
                reload_end(d, j);
                return;
        }
        if (j->r < 0) {
                log_err("reload refused: cannot carry state over: %s", strerror(-j->r));
                reload_end(d, j);
                return;
        }
        /* An alert whose rule changed, went away or no longer applies to its
         * station would otherwise stay open forever for everyone who saw it
         * raised: end it, through the old engine, which still knows how the
         * rule and the station were described. */
        int64_t now = d->cfg.event_clock && fh_engine_clock(d->engine) != FH_TIME_NONE ? fh_engine_clock(d->engine)
                                                                                      : wall_ms();
        uint64_t cleared_before = fh_engine_stats_get(d->engine)->events[FH_EVENT_CLEARED];
        fh_engine_end_orphans(d->engine, ne, now);
        uint64_t ended = fh_engine_stats_get(d->engine)->events[FH_EVENT_CLEARED] - cleared_before;
        fh_engine_set_alert_cb(ne, on_alert, d);
        /* Stations may have moved in the new registry: carry partitions by id. */
        const fh_registry *oreg = fh_engine_registry(d->engine), *nreg = fh_engine_registry(ne);
        uint16_t *slots = fh_calloc(nreg->n_stations + 1, sizeof(*slots));
        for (size_t i = 0; i < oreg->n_stations; i++)
                if (d->sensor_slot[i]) {
                        const fh_station *st = fh_registry_find(nreg, oreg->stations[i].id, oreg->stations[i].id_len);
                        if (st)
                                slots[st->index] = d->sensor_slot[i];
                }
        free(d->sensor_slot);
        d->sensor_slot = slots;
        fh_engine_stats total;
        stats_total(d, &total);
        d->stats_before = total;
        /* Freeing a large engine takes long too (0.7 s at 100,000 stations):
         * on a worker, and nothing refers to it any more. */
        fh_engine_free_req *fr = fh_calloc(1, sizeof(*fr));
        fr->e = d->engine;
        fr->req.data = fr;
        uv_queue_work(d->loop, &fr->req, engine_free_work, engine_free_done);
        d->engine = ne;
        j->ne = NULL;
        /* The closing events are in the outbox now: a checkpoint makes them
         * and the new state survive a crash (a restart with the new rules
         * from an older state would drop those alerts without a word). */
        if (ended > 0)
                checkpoint_start(d);
        log_notice("reloaded rules=%zu stations=%zu ended=%llu in %.1f s (input held for %.1f s)",
                   fh_engine_rules(ne)->n_rules, fh_engine_registry(ne)->n_stations, (unsigned long long) ended,
                   (double) (uv_hrtime() - j->t0) / 1e9, (double) (uv_hrtime() - j->frozen_t0) / 1e9);
        reload_end(d, j);
        /* Boundaries passed while frozen are evaluated now. */
        if (!d->cfg.event_clock && !d->stopping)
                on_tick(&d->tick_timer);
}

static void reload_loaded(uv_work_t *req, int status) {
        reload_job *j = req->data;
        fh_daemon *d = j->d;
        char line[4096];

        if (status < 0 || d->stopping) {
                reload_end(d, j);
                return;
        }
        fh_diags_sort(&j->diags);
        for (size_t i = 0; i < j->diags.n; i++) {
                fh_diag_format(&j->diags.v[i], line, sizeof(line));
                fh_log(j->diags.v[i].severity == FH_DIAG_ERROR ? LOG_ERR : LOG_WARNING, "%s", line);
        }
        if (j->r < 0) {
                log_err("reload refused: %zu errors in rules or stations; still running the previous set",
                        j->diags.n_errors);
                reload_end(d, j);
                return;
        }
        if (d->rebalance) {
                /* A rebalance's worker reads the registry and its end
                 * changes the engine: load again once it is over. */
                d->reload_again = true;
                reload_end(d, j);
                return;
        }
        d->frozen = true;
        uv_idle_stop(&d->drain_idle);
        j->frozen_t0 = uv_hrtime();
        uv_queue_work(d->loop, &j->req, reload_carry, reload_swapped);
}

static void reload(fh_daemon *d) {
        if (d->reloading || d->rebalance) {
                /* The files may have changed again since the running reload
                 * read them. */
                d->reload_again = true;
                return;
        }
        reload_job *j = fh_calloc(1, sizeof(*j));
        j->d = d;
        j->ecfg = *fh_engine_config_get(d->engine);
        j->diags = (fh_diags) FH_DIAGS_NULL;
        j->req.data = j;
        j->t0 = uv_hrtime();
        d->reloading = true;
        sd_notifyf(0, "RELOADING=1\nMONOTONIC_USEC=%llu", (unsigned long long) (uv_hrtime() / 1000));
        uv_queue_work(d->loop, &j->req, reload_load, reload_loaded);
}

void fh_daemon_reload(fh_daemon *d) {
        reload(d);
}

/* ---- shutdown ---- */

/* The handles live inside the daemon, so it may be freed only after the
 * loop has run their close callbacks: fh_daemon_main frees it once uv_run
 * returns, which is after every close. */
static void close_handle(fh_daemon *d, uv_handle_t *h) {
        (void) d;
        if (!uv_is_closing(h))
                uv_close(h, NULL);
}

/* Every handle the daemon has on the loop, to close. */
static void close_handles(fh_daemon *d, void (*close_one)(fh_daemon *d, uv_handle_t *h)) {
        close_one(d, (uv_handle_t *) &d->retry_timer);
        close_one(d, (uv_handle_t *) &d->rebalance_timer);
        close_one(d, (uv_handle_t *) &d->tick_timer);
        close_one(d, (uv_handle_t *) &d->checkpoint_timer);
        close_one(d, (uv_handle_t *) &d->stats_timer);
        close_one(d, (uv_handle_t *) &d->commit_timer);
        close_one(d, (uv_handle_t *) &d->stop_timer);
        close_one(d, (uv_handle_t *) &d->drain_idle);
        if (d->cwake.started)
                close_one(d, (uv_handle_t *) &d->cwake.poll);
        if (d->pwake.started)
                close_one(d, (uv_handle_t *) &d->pwake.poll);
        if (d->signals_started) {
                close_one(d, (uv_handle_t *) &d->sig_term);
                close_one(d, (uv_handle_t *) &d->sig_int);
                close_one(d, (uv_handle_t *) &d->sig_hup);
        }
}

static void finish_stop(fh_daemon *d) {
        size_t undelivered = d->n_outs;

        if (d->stopped)
                return;
        d->stopped = true;
        if (revoking(d))
                /* Before the last checkpoint, which must not hold the
                 * sensors handed over. */
                revoke_finish_now(d, d->rebalance);
        if (undelivered)
                log_err("stopping with %zu alerts not confirmed by every sink", undelivered);

        /* State first: the commit goes no further than the state saved. */
        if (checkpoint(d) == 0 && d->cfg.state_dir)
                log_info("state saved to %s/state", d->cfg.state_dir);
        store_offsets(d, NULL);
        if (d->consumer) {
                rd_kafka_resp_err_t e = rd_kafka_commit(d->consumer, NULL, 0);
                if (e && e != RD_KAFKA_RESP_ERR__NO_OFFSET)
                        log_warning("final commit: %s", rd_kafka_err2str(e));
        }
        log_stats(d);

        uv_timer_stop(&d->tick_timer);
        uv_timer_stop(&d->checkpoint_timer);
        uv_timer_stop(&d->stats_timer);
        uv_timer_stop(&d->commit_timer);
        uv_timer_stop(&d->stop_timer);
        uv_timer_stop(&d->retry_timer);
        uv_timer_stop(&d->rebalance_timer);
        close_handles(d, close_handle);
        if (d->hooks.on_stopped)
                d->hooks.on_stopped(d->hooks.userdata, d->exit_code);
}

static void on_redis_closed(void *userdata, size_t undelivered) {
        fh_daemon *d = userdata;
        d->redis = NULL;
        d->redis_closed = true;
        if (undelivered)
                log_err("Redis: %zu alerts could not be delivered before the shutdown deadline", undelivered);
        finish_stop(d);
}

static void on_stop_timer(uv_timer_t *h) {
        fh_daemon *d = h->data;
        bool kafka_done = !d->producer || rd_kafka_outq_len(d->producer) == 0;

        if (d->producer)
                rd_kafka_poll(d->producer, 0);
        if (!kafka_done && uv_now(d->loop) < (uint64_t) d->stop_deadline)
                return;
        if (!kafka_done)
                log_err("Kafka: %d messages not delivered before the shutdown deadline",
                        rd_kafka_outq_len(d->producer));
        uv_timer_stop(&d->stop_timer);
        if (d->redis) {
                int64_t left = d->stop_deadline - (int64_t) uv_now(d->loop);
                fh_redis_close(d->redis, left > 0 ? left : 0, on_redis_closed, d);
        } else
                finish_stop(d);
}

void fh_daemon_stop(fh_daemon *d) {
        if (d->stopping)
                return;
        d->stopping = true;
        sd_notify(0, "STOPPING=1");
        log_notice("stopping: finishing readings in hand and flushing alerts");
        /* Messages already polled were handled synchronously: what is "in
         * hand" is what the sinks have not confirmed yet. */
        if (d->consumer && d->assignment)
                rd_kafka_pause_partitions(d->consumer, d->assignment);
        uv_idle_stop(&d->drain_idle);
        d->stop_deadline = (int64_t) uv_now(d->loop) + d->cfg.shutdown_timeout_ms;
        uv_timer_start(&d->stop_timer, on_stop_timer, 0, 10);
}

static void on_signal(uv_signal_t *h, int signum) {
        fh_daemon *d = h->data;

        if (signum == SIGHUP) {
                log_notice("SIGHUP: reloading rules and stations");
                reload(d);
        } else {
                if (d->stopping) {
                        log_warning("second signal: exiting now");
                        d->stop_deadline = 0;
                        return;
                }
                fh_daemon_stop(d);
        }
}

/* ---- setup ---- */

/* A state directory that cannot hold the state is found at start, where an
 * operator sees it, not at the first checkpoint. */
static int state_dir_check(const char *dir) {
        char probe[4096];
        int fd;

        if (mkdir(dir, 0700) < 0 && errno != EEXIST)
                return -errno;
        if (snprintf(probe, sizeof(probe), "%s/.probe-%ld", dir, (long) getpid()) >= (int) sizeof(probe))
                return -ENAMETOOLONG;
        fd = open(probe, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (fd < 0)
                return -errno;
        close(fd);
        unlink(probe);
        return 0;
}

static void on_setup_closed(uv_handle_t *h) {
        fh_daemon *d = h->data;
        if (--d->setup_closing == 0)
                fh_daemon_free(d);
}

static void on_setup_redis_closed(void *userdata, size_t undelivered) {
        fh_daemon *d = userdata;
        (void) undelivered;
        d->redis = NULL;
        if (--d->setup_closing == 0)
                fh_daemon_free(d);
}

static void setup_close(fh_daemon *d, uv_handle_t *h) {
        d->setup_closing++;
        uv_close(h, on_setup_closed);
}

/* Undoes a start that failed once handles were on the loop: they are in
 * the daemon's memory, which is freed after the last close callback (the
 * caller runs the loop until then, as for any libuv handle). */
static void setup_abort(fh_daemon *d) {
        d->setup_closing = 1;   /* held until every close is under way */
        close_handles(d, setup_close);
        if (d->redis) {
                d->setup_closing++;
                fh_redis_close(d->redis, 0, on_setup_redis_closed, d);
        }
        if (--d->setup_closing == 0)
                fh_daemon_free(d);
}

static int signals_init(fh_daemon *d) {
        int r;

        if ((r = uv_signal_init(d->loop, &d->sig_term)) < 0)
                return r;
        if ((r = uv_signal_init(d->loop, &d->sig_int)) < 0) {
                uv_close((uv_handle_t *) &d->sig_term, NULL);
                return r;
        }
        if ((r = uv_signal_init(d->loop, &d->sig_hup)) < 0) {
                uv_close((uv_handle_t *) &d->sig_term, NULL);
                uv_close((uv_handle_t *) &d->sig_int, NULL);
                return r;
        }
        d->signals_started = true;
        d->sig_term.data = d->sig_int.data = d->sig_hup.data = d;
        uv_signal_start(&d->sig_term, on_signal, SIGTERM);
        uv_signal_start(&d->sig_int, on_signal, SIGINT);
        uv_signal_start(&d->sig_hup, on_signal, SIGHUP);
        return 0;
}

/* Order: what needs no loop first (engine, state, Kafka clients), undone
 * by fh_daemon_free(); then Redis and the loop's handles, undone through
 * the loop by setup_abort(). *ret is set only on success. */
int fh_daemon_new(fh_daemon **ret, uv_loop_t *loop, fh_daemon_config *cfg, const fh_daemon_hooks *hooks) {
        fh_engine_config ecfg = FH_ENGINE_CONFIG_DEFAULT;
        fh_diags diags = FH_DIAGS_NULL;
        fh_checkpoint cp = { 0 };
        bool restored = false;
        char line[4096];
        fh_daemon *d;
        int r;

        d = fh_calloc(1, sizeof(*d));
        d->loop = loop;
        d->cfg = *cfg;
        *cfg = (fh_daemon_config) { 0 };
        if (hooks)
                d->hooks = *hooks;
        d->outs.next = d->outs.prev = &d->outs;
        d->tracker = fh_tracker_new();
        d->newest_ts = FH_TIME_NONE;

        ecfg.clock = d->cfg.event_clock ? FH_CLOCK_EVENT : FH_CLOCK_EXTERNAL;
        ecfg.tick_ms = d->cfg.tick_ms;
        ecfg.lateness_ms = d->cfg.lateness_ms;
        ecfg.max_readings_per_minute = (uint32_t) d->cfg.max_readings_per_minute;
        ecfg.max_window_samples = (uint32_t) d->cfg.max_window_samples;
        ecfg.tz_offset_min = d->cfg.tz_offset_min;
        r = fh_load_engine(d->cfg.rules, d->cfg.stations, &ecfg, &d->engine, &diags);
        fh_diags_sort(&diags);
        for (size_t i = 0; i < diags.n; i++) {
                fh_diag_format(&diags.v[i], line, sizeof(line));
                fh_log(diags.v[i].severity == FH_DIAG_ERROR ? LOG_ERR : LOG_WARNING, "%s", line);
        }
        fh_diags_clear(&diags);
        if (r < 0) {
                log_err("refusing to start: the rules or the station registry have errors");
                goto fail;
        }
        fh_engine_set_alert_cb(d->engine, on_alert, d);
        d->sensor_slot = fh_calloc(fh_engine_registry(d->engine)->n_stations + 1, sizeof(*d->sensor_slot));

        if (d->cfg.state_dir) {
                r = state_dir_check(d->cfg.state_dir);
                if (r == -ENOSPC || r == -EDQUOT)
                        /* A full disk is weather, not configuration: alerting
                         * goes on without checkpoints, as it does when the
                         * disk fills later. */
                        log_err("cannot checkpoint state to %s: %s; alerting goes on without it",
                                d->cfg.state_dir, strerror(-r));
                else if (r < 0) {
                        log_err("refusing to start: cannot keep state in %s: %s", d->cfg.state_dir, strerror(-r));
                        goto fail;
                }
                r = fh_state_load(d->cfg.state_dir, d->engine, &cp);
                if (r == 0) {
                        restored = true;
                        for (size_t i = 0; i < cp.positions.n; i++)
                                fh_offsets_add(&d->durable, cp.positions.v[i].topic, cp.positions.v[i].partition,
                                               cp.positions.v[i].offset);
                        d->resume = cp.positions;
                        cp.positions = (fh_offsets) { 0 };
                        log_info("state restored from %s/state partitions=%zu unconfirmed=%zu",
                                 d->cfg.state_dir, d->resume.n, cp.n_outbox);
                        const fh_registry *reg = fh_engine_registry(d->engine);
                        for (size_t i = 0; i < cp.n_sensors; i++) {
                                const fh_station *st = fh_registry_find(reg, cp.sensor_ids[i], strlen(cp.sensor_ids[i]));
                                const fh_offset *po = &cp.partitions.v[cp.sensor_part[i]];
                                if (st)
                                        d->sensor_slot[st->index] = slot_of(d, po->topic, po->partition, true);
                        }
                } else if (r != -ENOENT)
                        log_err("cannot restore state from %s/state: %s; starting from committed offsets",
                                d->cfg.state_dir, strerror(-r));
        }
        if (d->cfg.alerts_topic) {
                char err[512];
                /* Every partition gets a watermark from the start, so a
                 * checkpoint always says where to look after a crash. */
                if (fh_kafka_watermarks(&d->cfg, d->cfg.alerts_topic, &d->watermarks, err, sizeof(err)) < 0)
                        log_warning("cannot read the watermarks of %s: %s", d->cfg.alerts_topic, err);
                if (restored && cp.watermarks.n > 0) {
                        d->suppress = fh_strset_new();
                        /* All of them: a sensor first heard of after the
                         * checkpoint has no known partition yet. What is not
                         * regenerated here is dropped once caught up. */
                        long n = fh_kafka_scan_alerts(&d->cfg, d->cfg.alerts_topic, &cp.watermarks,
                                                      NULL, NULL, d->suppress,
                                                      30000, err, sizeof(err));
                        if (n < 0)
                                log_err("cannot read back %s after the last checkpoint: %s; alerts published since "
                                        "may be published again", d->cfg.alerts_topic, err);
                        else
                                log_info("%ld alerts were published after the last checkpoint; they will not be "
                                         "published again", n);
                        d->scan_from = cp.watermarks;
                        cp.watermarks = (fh_offsets) { 0 };
                }
        }
        /* Without a state to go on from, one is written before anything is
         * consumed: it holds the alerts topic's watermarks, so a crash
         * before the first periodic checkpoint reads back what this run
         * published, and it is what lets offsets be committed at all. */
        if (d->cfg.state_dir && !restored && checkpoint(d) == 0)
                log_info("initial state written to %s/state", d->cfg.state_dir);
        r = kafka_start(d);
        if (r < 0)
                goto fail;

        if (d->cfg.redis_enabled) {
                r = fh_redis_new(&d->redis, loop, &d->cfg.redis, on_redis_ack, d);
                if (r < 0) {
                        log_err("failed to set up Redis: %s", strerror(-r));
                        goto fail;
                }
                fh_redis_set_state_cb(d->redis, on_redis_state, d);
        }
        /* From here on a failure is undone through the loop. */
        uv_idle_init(loop, &d->drain_idle);
        d->drain_idle.data = d;
        uv_timer_init(loop, &d->tick_timer);
        uv_timer_init(loop, &d->checkpoint_timer);
        uv_timer_init(loop, &d->stats_timer);
        uv_timer_init(loop, &d->stop_timer);
        uv_timer_init(loop, &d->commit_timer);
        uv_timer_init(loop, &d->retry_timer);
        uv_timer_init(loop, &d->rebalance_timer);
        d->rebalance_timer.data = d;
        d->tick_timer.data = d->checkpoint_timer.data = d->stats_timer.data = d->stop_timer.data =
                d->commit_timer.data = d->retry_timer.data = d;
        if (d->producer && (r = wake_init(d, &d->pwake, d->pq)) < 0) {
                log_err("failed to watch the Kafka producer's queue: %s", strerror(-r));
                goto abort;
        }
        if ((r = wake_init(d, &d->cwake, d->cq)) < 0) {
                log_err("failed to watch the Kafka consumer's queue: %s", strerror(-r));
                goto abort;
        }
        if (d->hooks.install_signals && (r = signals_init(d)) < 0) {
                log_err("failed to install signal handlers: %s", uv_strerror(r));
                goto abort;
        }
        if ((r = kafka_subscribe(d)) < 0)
                goto abort;
        resend_outbox(d, &cp);
        fh_checkpoint_clear(&cp);

        if (!d->cfg.event_clock) {
                /* Not the boundaries of the time we were down: the readings
                 * of that time are still in Kafka, unread, and would make
                 * every sensor look silent. */
                fh_engine_set_clock(d->engine, wall_ms());
                on_tick(&d->tick_timer);
        }
        if (d->cfg.checkpoint_ms > 0)
                uv_timer_start(&d->checkpoint_timer, on_checkpoint, (uint64_t) d->cfg.checkpoint_ms,
                               (uint64_t) d->cfg.checkpoint_ms);
        if (d->cfg.stats_ms > 0)
                uv_timer_start(&d->stats_timer, on_stats, (uint64_t) d->cfg.stats_ms, (uint64_t) d->cfg.stats_ms);
        uv_timer_start(&d->commit_timer, on_commit_timer, 200, 200);

        if (sd_watchdog_enabled(0, &d->watchdog_usec) <= 0)
                d->watchdog_usec = 0;

        log_notice("started rules=%zu stations=%zu brokers=%s group=%s redis=%s",
                   fh_engine_rules(d->engine)->n_rules, fh_engine_registry(d->engine)->n_stations,
                   d->cfg.brokers, d->cfg.group_id, d->redis ? "on" : "off");
        sd_notify(0, "READY=1");
        *ret = d;
        return 0;
abort:
        fh_checkpoint_clear(&cp);
        setup_abort(d);
        return r;
fail:
        fh_checkpoint_clear(&cp);
        fh_daemon_free(d);
        return r;
}

const fh_engine *fh_daemon_engine(const fh_daemon *d) {
        return d->engine;
}

int fh_daemon_assigned(const fh_daemon *d) {
        if (d->rebalance)
                return -1;
        return d->assignment ? d->assignment->cnt : 0;
}

uint64_t fh_daemon_consumed(const fh_daemon *d) {
        return d->consumed;
}

uint64_t fh_daemon_dead_letters(const fh_daemon *d) {
        return d->dlq;
}

uint64_t fh_daemon_pauses(const fh_daemon *d) {
        return d->pauses;
}

size_t fh_daemon_in_flight(const fh_daemon *d) {
        return d->n_outs;
}

fh_daemon *fh_daemon_free(fh_daemon *d) {
        if (!d)
                return NULL;
        d->checkpoint_again = false;
        checkpoint_reap(d, true);
        while (d->outs.next != &d->outs) {
                fh_out *o = d->outs.next;
                o->prev->next = o->next;
                o->next->prev = o->prev;
                fh_outbox_item_clear(&o->it);
                free(o);
        }
        if (d->rebalance && !d->rebalance->in_worker)
                rebalance_free(d, d->rebalance);
        if (d->consumer) {
                rd_kafka_consumer_close(d->consumer);
                if (d->cq)
                        rd_kafka_queue_destroy(d->cq);
                rd_kafka_destroy(d->consumer);
        }
        if (d->producer) {
                if (d->pq)
                        rd_kafka_queue_destroy(d->pq);
                rd_kafka_destroy(d->producer);
        }
        for (int i = 0; i < 2; i++) {
                if (d->cwake.fds[i] > 0)
                        close(d->cwake.fds[i]);
                if (d->pwake.fds[i] > 0)
                        close(d->pwake.fds[i]);
        }
        if (d->assignment)
                rd_kafka_topic_partition_list_destroy(d->assignment);
        while (d->handovers) {
                handover *h = d->handovers;
                d->handovers = h->next;
                free(h->topic);
                free(h);
        }
        fh_offsets_clear(&d->resume);
        fh_offsets_clear(&d->carried);
        fh_offsets_clear(&d->eof);
        fh_offsets_clear(&d->durable);
        fh_offsets_clear(&d->stored);
        fh_offsets_clear(&d->checkpoint_positions);
        fh_offsets_clear(&d->watermarks);
        fh_offsets_clear(&d->scan_from);
        fh_strset_free(d->suppress);
        free(d->sensor_slot);
        for (size_t i = 1; i < d->n_slots; i++)
                free(d->slots[i].topic);
        free(d->slots);
        fh_tracker_free(d->tracker);
        fh_engine_free(d->engine);
        fh_buf_free(&d->json);
        fh_daemon_config_free(&d->cfg);
        free(d);
        return NULL;
}

static void on_stopped_main(void *userdata, int code) {
        (void) userdata;
        (void) code;
}

int fh_daemon_check(const char *config_path) {
        fh_daemon_config cfg = { 0 };
        fh_diags diags = FH_DIAGS_NULL;
        fh_engine *e = NULL;
        int r;

        r = fh_daemon_config_load(config_path, &cfg, &diags);
        if (r == 0) {
                fh_engine_config ecfg = FH_ENGINE_CONFIG_DEFAULT;
                ecfg.tick_ms = cfg.tick_ms;
                ecfg.lateness_ms = cfg.lateness_ms;
                ecfg.max_readings_per_minute = (uint32_t) cfg.max_readings_per_minute;
                ecfg.max_window_samples = (uint32_t) cfg.max_window_samples;
                ecfg.tz_offset_min = cfg.tz_offset_min;
                r = fh_load_engine(cfg.rules, cfg.stations, &ecfg, &e, &diags);
        }
        fh_diags_sort(&diags);
        fh_print_diags(&diags);
        fh_diags_clear(&diags);
        if (r == 0)
                printf("%s: ok: %zu rules, %zu stations\n", config_path, fh_engine_rules(e)->n_rules,
                       fh_engine_registry(e)->n_stations);
        if (cfg.path)
                fh_daemon_config_free(&cfg);
        fh_engine_free(e);
        return r == 0 ? 0 : 1;
}

int fh_daemon_main(const char *config_path) {
        fh_daemon_config cfg;
        fh_diags diags = FH_DIAGS_NULL;
        uv_loop_t loop;
        fh_daemon *d = NULL;
        char line[4096];
        int code;

        /* A peer that resets a socket must be an error to handle, not a
         * signal that ends the daemon. */
        signal(SIGPIPE, SIG_IGN);
        fh_log_init(LOG_INFO);
        if (fh_daemon_config_load(config_path, &cfg, &diags) < 0) {
                for (size_t i = 0; i < diags.n; i++) {
                        fh_diag_format(&diags.v[i], line, sizeof(line));
                        log_err("%s", line);
                }
                fh_diags_clear(&diags);
                return 1;
        }
        fh_log_init(cfg.log_level);
        uv_loop_init(&loop);
        fh_daemon_hooks hooks = { .on_stopped = on_stopped_main, .install_signals = true };
        if (fh_daemon_new(&d, &loop, &cfg, &hooks) < 0) {
                /* What the start left on the loop is closing: let it finish. */
                uv_run(&loop, UV_RUN_DEFAULT);
                if (uv_loop_close(&loop) != 0)
                        log_debug("loop closed with handles still open");
                return 1;
        }
        uv_run(&loop, UV_RUN_DEFAULT);
        code = d->exit_code;
        fh_daemon_free(d);
        uv_run(&loop, UV_RUN_NOWAIT);
        if (uv_loop_close(&loop) != 0)
                log_debug("loop closed with handles still open");
        return code;
}
