/* Kafka input: the consumer and producer set-up, waking on their queues'
 * fds and draining them, one message at a time through the engine, flow
 * control (pause while too much waits for delivery) and the offsets handed
 * to librdkafka. Runs on the loop thread. */
#include "daemon-internal.h"

/* ---- consuming ---- */

/* A message is given to the shard of its partition (shard.c), which takes
 * it: its outcome comes back in a batch. Errors and partition ends are the
 * loop's. */
static void handle_message(fh_daemon *d, rd_kafka_message_t *m) {
        if (m->err) {
                if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF)
                        fh_offsets_add(&d->eof, rd_kafka_topic_name(m->rkt), m->partition, m->offset);
                else
                        log_warning("Kafka consumer: %s", rd_kafka_message_errstr(m));
                rd_kafka_message_destroy(m);
                return;
        }
        d->consumed++;
        d->last_input_ms = d->batch_now;
        fhd_shards_give(d, m);
}

/* Messages given to the shards and not collected yet count too: each
 * may become an alert or a dead letter. */
static size_t in_flight(const fh_daemon *d) {
        size_t n = d->n_outs + d->outstanding;
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
        size_t n = in_flight(d), k = fh_tracker_pending(d->tracker) + d->outstanding;
        if (!d->paused && (n >= d->cfg.max_in_flight || k >= d->cfg.max_pending))
                set_paused(d, true);
        else if (d->paused && n <= d->cfg.max_in_flight / 2 && k <= d->cfg.max_pending / 2)
                set_paused(d, false);
}


static bool drain_consumer_turn(fh_daemon *d);

static bool drain_consumer(fh_daemon *d) {
        bool more = drain_consumer_turn(d);
        /* What this turn gave the shards goes to them now. */
        fhd_shards_flush(d);
        return more;
}

static bool drain_consumer_turn(fh_daemon *d) {
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
                /* The shards have enough in hand: their next batch
                 * back (on_shard_async) starts the drain again. */
                if (fhd_shards_full(d))
                        return false;
                rd_kafka_message_t *m = rd_kafka_consume_queue(d->cq, 0);
                if (!m)
                        return false;
                /* During a revocation the state being handed over must
                 * not move; its partitions are paused, and what was
                 * fetched before is read again by the next owner from the
                 * handed-over position. */
                if (!fhd_revoking(d))
                        handle_message(d, m);
                else
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

void fhd_on_drain_idle(uv_idle_t *h) {
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
                uv_idle_start(&d->drain_idle, fhd_on_drain_idle);
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

int fhd_wake_init(fh_daemon *d, kafka_wake *w, rd_kafka_queue_t *q) {
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
void fhd_store_offsets(fh_daemon *d, const rd_kafka_topic_partition_list_t *leaving) {
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

void fhd_on_commit_timer(uv_timer_t *h) {
        fh_daemon *d = h->data;

        fhd_checkpoint_reap(d, false);
        fhd_store_offsets(d, NULL);
        /* Redis answers release readings too, without a Kafka wake-up. */
        check_flow(d);
        /* The ping comes from a loop timer, so a stalled loop stops it and
         * systemd restarts the daemon. */
        if (d->watchdog_usec && uv_now(d->loop) - d->watchdog_last >= d->watchdog_usec / 4000) {
                sd_notify(0, "WATCHDOG=1");
                d->watchdog_last = uv_now(d->loop);
        }
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
int fhd_kafka_start(fh_daemon *d) {
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
                rd_kafka_conf_set_dr_msg_cb(conf, fhd_on_delivery);
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
        rd_kafka_conf_set_rebalance_cb(conf, fhd_on_rebalance);
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
int fhd_kafka_subscribe(fh_daemon *d) {
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
