/* Rebalances and hand-over: which input partition each sensor belongs to,
 * the hand-over records written to the state topic when a partition is
 * revoked and read back when one is assigned. Runs on the loop thread,
 * except assign_fetch and assign_scan, which run on libuv's worker
 * threads. */
#include "daemon-internal.h"

static uint16_t slot_of(fh_daemon *d, const char *topic, int32_t partition, bool create,
                        const rd_kafka_topic_partition_list_t *pending) {
        for (size_t i = 1; i < d->n_slots; i++)
                if (d->slots[i].partition == partition && !strcmp(d->slots[i].topic, topic))
                        return (uint16_t) i;
        if (!create || d->n_slots >= UINT16_MAX)
                return 0;
        if (d->n_slots == 0)
                d->n_slots = 1;  /* slot 0 means "none" */
        uint8_t shard = fhd_shard_for_new_slot(d, pending);
        d->slots = fh_realloc(d->slots, (d->n_slots + 1) * sizeof(*d->slots));
        d->slot_shard = fh_realloc(d->slot_shard, (d->n_slots + 1) * sizeof(*d->slot_shard));
        d->slots[d->n_slots] = (fh_offset) { fh_strdup(topic), partition, 0 };
        d->slot_shard[d->n_slots] = shard;
        return (uint16_t) d->n_slots++;
}

uint16_t fhd_slot_of(fh_daemon *d, const char *topic, int32_t partition, bool create) {
        return slot_of(d, topic, partition, create, NULL);
}

uint16_t fhd_slot_of_assigned(fh_daemon *d, const char *topic, int32_t partition,
                              const rd_kafka_topic_partition_list_t *parts) {
        return slot_of(d, topic, partition, true, parts);
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

        fhd_shards_quiesce(d);
        fh_engine_forget(fhd_shard_of_slot(d, h->slot)->engine, in_slot, &f);
        for (size_t s = 0; s < fhd_registry(d)->n_stations; s++)
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
void fhd_handover_delivered(fh_daemon *d, handover *h, rd_kafka_resp_err_t err) {
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
        if (!h->failed && !assigned(d, h->topic, h->partition) && fhd_slot_of(d, h->topic, h->partition, false) == h->slot) {
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
        fhd_shards_quiesce(d);
        uint16_t slot = fhd_slot_of(d, topic, p, false);
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
        fh_engine_snapshot(fhd_shard_of_slot(d, slot)->engine, in_slot, &f, &snap);
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

static bool sensor_in_slots(void *userdata, const void *key, size_t len) {
        const slot_set *ss = userdata;
        const fh_station *st = key ? fh_registry_find(fhd_registry(ss->d), key, len) : NULL;
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

void fhd_rebalance_free(fh_daemon *d, rebalance *rb) {
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
        uv_idle_start(&d->drain_idle, fhd_on_drain_idle);
        if (d->reload_again && !d->reloading) {
                d->reload_again = false;
                fhd_reload(d);
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
        fhd_shards_assign(d, parts);
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

        rb->scanned = fh_kafka_scan_published(&d->cfg, &rb->scan, sensor_in_slots, &rb->ss, rb->seen, 30000, rb->err,
                                              sizeof(rb->err));
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
                fhd_rebalance_free(d, rb);
                rebalance_done(d);
                return;
        }
        if (rb->scanned < 0)
                log_err("rebalance: cannot read back the alerts and CAP topics: %s; some alerts may be published twice",
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
        fhd_rebalance_free(d, rb);
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
        fhd_shards_quiesce(d);
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
        slot_filter f = { d, fhd_slot_of_assigned(d, topic, p, parts) };
        rb->taken[f.slot] = true;
        if (fh_engine_restore_each(fhd_shard_of_slot(d, f.slot)->engine, snap, snap_len, mark_slot, &f) < 0) {
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
                fhd_rebalance_free(d, rb);
                return;
        }
        if (rb->r == 0 && rb->next < rb->parts->cnt) {
                assign_restore(d, rb, rb->next++);
                return;
        }
        uv_timer_stop(&d->rebalance_timer);
        /* Alerts the previous owners published that we will regenerate. */
        if (rb->scan.n > 0 && (d->cfg.alerts_topic || d->cfg.cap_topic)) {
                rb->seen = fh_strset_new();
                rb->ss.slots = rb->taken;
                rb->in_worker = true;
                uv_queue_work(d->loop, &rb->req, assign_scan, assign_scanned);
                return;
        }
        assign_now(d, rb->parts);
        fhd_rebalance_free(d, rb);
        rebalance_done(d);
}

/* Assigned: take over what the previous owners handed over. */
static void assign_fetched(uv_work_t *req, int status) {
        rebalance *rb = req->data;
        fh_daemon *d = (fh_daemon *) rb->ss.d;

        rb->in_worker = false;
        if (status < 0 || rb->cancelled || d->stopping) {
                fhd_rebalance_free(d, rb);
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

bool fhd_revoking(const fh_daemon *d) {
        return d->rebalance && !d->rebalance->assign;
}

static void revoke_now(fh_daemon *d, rd_kafka_topic_partition_list_t *parts) {
        fhd_store_offsets(d, parts);
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
                fhd_rebalance_free(d, rb);
                rebalance_done(d);
        }
}

/* Stopping in the middle of a revocation: the rest of its steps,
 * waiting here. */
void fhd_revoke_finish_now(fh_daemon *d, rebalance *rb) {
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
        fhd_rebalance_free(d, rb);
}

static void revoke_start(fh_daemon *d, rd_kafka_topic_partition_list_t *parts) {
        rebalance *rb = fh_calloc(1, sizeof(*rb));

        /* What was read before the revocation is in the state handed over
         * and tracked, as when the loop ingested. */
        fhd_shards_quiesce(d);
        rb->parts = rd_kafka_topic_partition_list_copy(parts);
        rb->hs = fh_calloc((size_t) parts->cnt + 1, sizeof(*rb->hs));
        rb->deadline = uv_now(d->loop) + 10000;
        d->rebalance = rb;
        /* Still assigned until the unassign: fetched messages of these
         * partitions are not processed (drain_consumer), so fetch no more. */
        rd_kafka_pause_partitions(d->consumer, parts);
        uv_timer_start(&d->rebalance_timer, on_revoke_step, 0, 20);
}

void fhd_on_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t *parts, void *opaque) {
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
                        fhd_rebalance_free(d, rb);
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
