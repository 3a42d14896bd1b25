/* Kafka output and delivery: every alert and dead letter the daemon sends
 * (fh_out), to the alerts topic, the dead-letter topic and Redis, held until
 * every sink confirmed it, retried, and re-sent from a checkpoint's outbox.
 * Runs on the loop thread; the delivery reports come inside
 * rd_kafka_poll, on the loop thread too. */
#include "daemon-internal.h"

static void on_retry_timer(uv_timer_t *h);

/* ---- alerts out ---- */

/* Items come from one block made with the first of them, reused: alerts
 * then allocate only their payloads, unless more than this many are in
 * flight at once (the excess is allocated and freed one by one). */
#define OUT_SLAB 4096

static bool in_slab(const fh_daemon *d, const fh_out *o) {
        return d->out_slab && o >= d->out_slab && o < d->out_slab + OUT_SLAB;
}

static void out_free(fh_daemon *d, fh_out *o) {
        if (!in_slab(d, o)) {
                free(o);
                return;
        }
        o->next = d->free_outs;
        d->free_outs = o;
}

void fhd_outs_free(fh_daemon *d) {
        while (d->outs.next != &d->outs) {
                fh_out *o = d->outs.next;
                o->prev->next = o->next;
                o->next->prev = o->prev;
                fh_outbox_item_clear(&o->it);
                out_free(d, o);
        }
        d->n_outs = 0;
        free(d->out_slab);
        d->out_slab = d->free_outs = NULL;
}

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
void fhd_out_confirm(fh_out *o, uint8_t sink) {
        fh_daemon *d = o->d;

        out_release_gate(o, sink);
        o->it.sinks &= (uint8_t) ~sink;
        if (o->it.sinks)
                return;
        o->prev->next = o->next;
        o->next->prev = o->prev;
        d->n_outs--;
        fh_outbox_item_clear(&o->it);
        out_free(d, o);
}

void fhd_on_redis_ack(void *userdata, void *token, int status) {
        fh_out *o = token;
        (void) userdata;
        if (status == FH_REDIS_DEFERRED)
                /* Redis went away with this alert unanswered: it waits in the
                 * sink's backlog and in our checkpoints, and no longer holds
                 * back the Kafka commit. */
                out_release_gate(o, FH_SINK_REDIS);
        else
                fhd_out_confirm(o, FH_SINK_REDIS);
}

fh_out *fhd_out_new(fh_daemon *d, fh_track *track, fh_payload *p) {
        fh_out *o;

        if (!d->out_slab) {
                d->out_slab = fh_malloc(OUT_SLAB * sizeof(*d->out_slab));
                for (size_t i = OUT_SLAB; i-- > 0;)
                        out_free(d, &d->out_slab[i]);
        }
        o = d->free_outs;
        if (o)
                d->free_outs = o->next;
        else
                o = fh_malloc(sizeof(*o));
        *o = (fh_out) { .d = d, .track = track, .it.p = p };
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

void fhd_out_retry(fh_daemon *d, fh_out *o, uint8_t sink, uint64_t ms) {
        o->retry_sinks |= sink;
        if (!o->in_retry) {
                o->in_retry = true;
                o->retry_next = d->retry;
                d->retry = o;
        }
        if (!uv_is_active((uv_handle_t *) &d->retry_timer))
                uv_timer_start(&d->retry_timer, on_retry_timer, ms, 0);
}

/* Without RD_KAFKA_MSG_F_COPY (or F_FREE) librdkafka sends the payload's
 * bytes where they are, and they must stay unchanged until the delivery
 * report (rdkafka.h, rd_kafka_produce): they do, as the item holds its
 * payload until Kafka confirmed, and a failed delivery is produced again
 * from the same item. The key and headers are always copied. */
static void kafka_produce(fh_daemon *d, fh_out *o) {
        const fh_payload *p = o->it.p;
        rd_kafka_resp_err_t err;

        if (p->kind == FH_OUT_CAP) {
                /* Keyed by sensor like the alerts: one alert's messages stay
                 * in order in one partition; the identifier header lets a
                 * consumer de-duplicate without parsing the XML. */
                err = rd_kafka_producev(d->producer,
                                        RD_KAFKA_V_TOPIC(d->cfg.cap_topic),
                                        RD_KAFKA_V_KEY(p->key, p->key_len),
                                        RD_KAFKA_V_VALUE((void *) p->value, p->value_len),
                                        RD_KAFKA_V_MSGFLAGS(0),
                                        RD_KAFKA_V_HEADER("fenghuo.cap.identifier", p->dedupe, -1),
                                        RD_KAFKA_V_OPAQUE(o),
                                        RD_KAFKA_V_END);
        } else if (p->kind == FH_OUT_ALERT) {
                err = rd_kafka_producev(d->producer,
                                        RD_KAFKA_V_TOPIC(d->cfg.alerts_topic),
                                        RD_KAFKA_V_KEY(p->key, p->key_len),
                                        RD_KAFKA_V_VALUE((void *) p->value, p->value_len),
                                        RD_KAFKA_V_MSGFLAGS(0),
                                        RD_KAFKA_V_OPAQUE(o),
                                        RD_KAFKA_V_END);
        } else {
                char part[16], off[24];
                snprintf(part, sizeof(part), "%d", p->src_partition);
                snprintf(off, sizeof(off), "%lld", (long long) p->src_offset);
                err = rd_kafka_producev(d->producer,
                                        RD_KAFKA_V_TOPIC(d->cfg.dead_letter_topic),
                                        RD_KAFKA_V_KEY(p->key, p->key_len),
                                        RD_KAFKA_V_VALUE((void *) p->value, p->value_len),
                                        RD_KAFKA_V_MSGFLAGS(0),
                                        RD_KAFKA_V_HEADER("fenghuo.reason", p->reason, -1),
                                        RD_KAFKA_V_HEADER("fenghuo.detail", p->detail, -1),
                                        RD_KAFKA_V_HEADER("fenghuo.topic", p->src_topic, -1),
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
                fhd_out_retry(d, o, FH_SINK_KAFKA, 1000);
        }
}

static const char *kafka_topic(const fh_daemon *d, uint8_t kind) {
        switch (kind) {
        case FH_OUT_ALERT: return d->cfg.alerts_topic;
        case FH_OUT_CAP: return d->cfg.cap_topic;
        default: return d->cfg.dead_letter_topic;
        }
}

/* Hands the item to the sinks still in it.sinks (those not confirmed). */
void fhd_out_send(fh_daemon *d, fh_out *o, uint8_t sinks) {
        fh_payload *p = o->it.p;

        if ((sinks & FH_SINK_KAFKA) && d->producer && kafka_topic(d, p->kind)) {
                if (p->kind != FH_OUT_DEAD_LETTER && p->dedupe && d->suppress &&
                    fh_strset_take(d->suppress, p->dedupe)) {
                        /* Already on the topic before the crash: not twice. */
                        d->suppressed++;
                } else {
                        o->it.sinks |= FH_SINK_KAFKA;
                        o->gating |= FH_SINK_KAFKA;
                        kafka_produce(d, o);
                }
        }
        if ((sinks & FH_SINK_REDIS) && d->redis && p->kind == FH_OUT_ALERT) {
                bool up = fh_redis_connected(d->redis);
                int r = fh_redis_send_payload(d->redis, p, p->dedupe != NULL, o);
                if (r < 0) {
                        log_err("Redis backlog full: alert %s not queued for Redis", p->dedupe);
                } else {
                        o->it.sinks |= FH_SINK_REDIS;
                        if (up)
                                o->gating |= FH_SINK_REDIS;
                }
        }
        if ((sinks & FH_SINK_FILE) && p->kind == FH_OUT_CAP && d->cfg.cap_dir) {
                o->it.sinks |= FH_SINK_FILE;
                o->gating |= FH_SINK_FILE;
                fhd_cap_file(d, o);
        }
        fhd_out_confirm(o, 0x80);
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
void fhd_on_redis_state(void *userdata, bool up) {
        fh_daemon *d = userdata;
        active_list l = { .e = fhd_engine0(d) };

        if (!up) {
                if (!d->stopping)
                        log_warning("Redis connection lost: %s; alerts wait in the backlog (%zu now)",
                                    fh_redis_last_error(d->redis), fh_redis_backlog(d->redis));
                return;
        }
        fhd_shards_quiesce(d);
        fhd_shards_foreach_active(d, collect_active, &l);
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

/* track: the message whose reading caused the alert (NULL for a tick or a
 * reload's ending): it stays uncommitted until every sink confirmed. The
 * JSON is formatted once, into a buffer reused for every alert, and copied
 * once, into the payload every sink and checkpoint shares. */
static void publish(fh_daemon *d, const fh_alert *a, fh_track *track) {
        fh_buf *j = &d->json;
        fh_out *o;

        fh_buf_reset(j);
        /* What the JSON reads of the engine (its configuration, the
         * registry's columns) is the same in every shard. */
        fh_alert_to_json(fhd_engine0(d), a, j);
        if (d->cfg.stdout_alerts) {
                fwrite(j->data, 1, j->len, stdout);
                fputc('\n', stdout);
                fflush(stdout);
        }
        if (d->hooks.on_alert)
                d->hooks.on_alert(d->hooks.userdata, a, j->data, j->len);

        o = fhd_out_new(d, track, fh_payload_alert(a, j->data, j->len));
        fhd_out_send(d, o, FH_SINK_KAFKA | FH_SINK_REDIS);
        fhd_cap_publish(d, a, track);
}

void fhd_on_alert(void *userdata, const fh_alert *a) {
        publish(userdata, a, NULL);
}

void fhd_on_message_alert(void *userdata, const fh_alert *a) {
        const fhd_source *src = userdata;
        publish(src->d, a, src->track);
}

/* ---- dead letters ---- */

void fhd_dead_letter(fh_daemon *d, fh_track *track, const rd_kafka_message_t *m, const char *reason,
                     const char *why) {
        d->dlq++;
        log_debug("rejected reading topic=%s partition=%d offset=%" PRId64 " reason=%s: %s",
                  rd_kafka_topic_name(m->rkt), m->partition, m->offset, reason, why);
        if (!d->producer || !d->cfg.dead_letter_topic)
                return;
        fh_payload *p = fh_payload_new(&(fh_payload_parts) {
                .kind = FH_OUT_DEAD_LETTER,
                .key = m->key,
                .key_len = m->key_len,
                .value = m->payload ? m->payload : "",
                .value_len = m->payload ? m->len : 0,
                .reason = reason,
                .reason_len = SIZE_MAX,
                .detail = why,
                .detail_len = SIZE_MAX,
                .src_topic = rd_kafka_topic_name(m->rkt),
                .src_topic_len = SIZE_MAX,
                .src_partition = m->partition,
                .src_offset = m->offset,
        });
        fhd_out_send(d, fhd_out_new(d, track, p), FH_SINK_KAFKA);
}

/* Re-sends what a checkpoint held unconfirmed, before anything new. */
void fhd_resend_outbox(fh_daemon *d, fh_checkpoint *c) {
        for (size_t i = 0; i < c->n_outbox; i++) {
                uint8_t sinks = c->outbox[i].sinks;
                fh_out *o = fhd_out_new(d, NULL, c->outbox[i].p);
                c->outbox[i] = (fh_outbox_item) { 0 };
                fhd_out_send(d, o, sinks);
        }
        if (c->n_outbox)
                log_notice("re-sent %zu alerts and dead letters a previous run had not seen confirmed", c->n_outbox);
}

/* ---- Kafka callbacks (run inside rd_kafka_*_poll, on the loop thread) ---- */

static void on_retry_timer(uv_timer_t *h) {
        fh_daemon *d = h->data;
        fh_out *list = d->retry;

        d->retry = NULL;
        while (list) {
                fh_out *o = list;
                uint8_t sinks = o->retry_sinks;
                list = o->retry_next;
                o->in_retry = false;
                o->retry_sinks = 0;
                if (sinks & FH_SINK_KAFKA)
                        kafka_produce(d, o);
                /* Last: confirming the file can free o. */
                if (sinks & FH_SINK_FILE)
                        fhd_cap_file(d, o);
        }
        if (d->retry)
                uv_timer_start(&d->retry_timer, on_retry_timer, 5000, 0);
}

void fhd_on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
        fh_daemon *d = opaque;
        fh_out *o = m->_private;

        (void) rk;
        if (d->cfg.state_topic && !strcmp(rd_kafka_topic_name(m->rkt), d->cfg.state_topic)) {
                fhd_handover_delivered(d, m->_private, m->err);
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
                fhd_out_retry(d, o, FH_SINK_KAFKA, 5000);
                return;
        }
        if (o->it.p->kind == FH_OUT_ALERT || o->it.p->kind == FH_OUT_CAP) {
                const char *topic = kafka_topic(d, o->it.p->kind);
                int64_t cur = fh_offsets_get(&d->watermarks, topic, m->partition);
                if (m->offset + 1 > cur)
                        fh_offsets_add(&d->watermarks, topic, m->partition, m->offset + 1);
        }
        fhd_out_confirm(o, FH_SINK_KAFKA);
}
