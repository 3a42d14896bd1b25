/* Shards: the engine's state split by input partition. Each slot (an
 * input partition this instance has read, rebalance.c) belongs to one
 * shard, chosen when the slot is made and never changed, and the state of
 * a sensor lives in the engine of its partition's shard. The engines share
 * one model (the rules bound to the registry). Runs on the loop thread. */
#include "daemon-internal.h"

fh_engine **fhd_engines_new(fh_engine *e0, size_t n, fh_daemon *d) {
        fh_engine **es = fh_calloc(n, sizeof(*es));

        es[0] = e0;
        for (size_t i = 1; i < n; i++)
                /* Cannot fail with a model. */
                fh_engine_new_shared(&es[i], fh_engine_model(e0), fh_engine_config_get(e0));
        for (size_t i = 0; i < n; i++)
                fh_engine_set_alert_cb(es[i], fhd_on_alert, d);
        return es;
}

void fhd_engines_free(fh_engine **es, size_t n) {
        for (size_t i = 0; es && i < n; i++)
                fh_engine_free(es[i]);
        free(es);
}

const fh_registry *fhd_registry(const fh_daemon *d) {
        return fh_engine_registry(fhd_engine0(d));
}

fhd_shard *fhd_shard_of_slot(const fh_daemon *d, uint16_t slot) {
        return &d->shards[slot && slot < d->n_slots ? d->slot_shard[slot] : 0];
}

static bool listed(const rd_kafka_topic_partition_list_t *l, const char *topic, int32_t p) {
        for (int i = 0; l && i < l->cnt; i++)
                if (l->elems[i].partition == p && !strcmp(l->elems[i].topic, topic))
                        return true;
        return false;
}

/* The shard of a new slot: the one with the fewest partitions of the
 * assignment (the one in force and the one being prepared), so that a
 * shard's share of the input follows the partitions actually read here;
 * the next in turn when none is assigned (a state file's slots). */
uint8_t fhd_shard_for_new_slot(const fh_daemon *d, const rd_kafka_topic_partition_list_t *pending) {
        size_t count[FH_SHARDS_MAX] = { 0 }, live = 0, best = 0;
        const rd_kafka_topic_partition_list_t *preparing = d->rebalance && d->rebalance->assign ? d->rebalance->parts
                                                                                                  : NULL;

        for (size_t i = 1; i < d->n_slots; i++)
                if (listed(d->assignment, d->slots[i].topic, d->slots[i].partition) ||
                    listed(preparing, d->slots[i].topic, d->slots[i].partition) ||
                    listed(pending, d->slots[i].topic, d->slots[i].partition)) {
                        count[d->slot_shard[i]]++;
                        live++;
                }
        if (live == 0)
                return (uint8_t) ((d->n_slots ? d->n_slots - 1 : 0) % d->n_shards);
        for (size_t k = 1; k < d->n_shards; k++)
                if (count[k] < count[best])
                        best = k;
        return (uint8_t) best;
}

uint16_t fhd_slot_of_message(fh_daemon *d, const rd_kafka_message_t *m) {
        if (d->last_slot && d->last_rkt == m->rkt && d->last_partition == m->partition)
                return d->last_slot;
        uint16_t slot = fhd_slot_of(d, rd_kafka_topic_name(m->rkt), m->partition, true);
        d->last_rkt = m->rkt;
        d->last_partition = m->partition;
        d->last_slot = slot;
        return slot;
}

void fhd_shards_assign(fh_daemon *d, const rd_kafka_topic_partition_list_t *parts) {
        d->last_slot = 0;
        for (int i = 0; i < parts->cnt; i++)
                fhd_slot_of_assigned(d, parts->elems[i].topic, parts->elems[i].partition, parts);
}

void fhd_shards_tick(fh_daemon *d, int64_t now) {
        for (size_t i = 0; i < d->n_shards; i++)
                fh_engine_tick(d->shards[i].engine, now);
}

void fhd_shards_set_clock(fh_daemon *d, int64_t now) {
        for (size_t i = 0; i < d->n_shards; i++)
                fh_engine_set_clock(d->shards[i].engine, now);
}

void fhd_shards_foreach_active(const fh_daemon *d, fh_alert_fn fn, void *userdata) {
        for (size_t i = 0; i < d->n_shards; i++)
                fh_engine_foreach_active(d->shards[i].engine, fn, userdata);
}

void fhd_shard_engines(const fh_daemon *d, const fh_engine **es) {
        for (size_t i = 0; i < d->n_shards; i++)
                es[i] = d->shards[i].engine;
}

void fhd_shards_snapshot(const fh_daemon *d, fh_buf *out) {
        const fh_engine *es[FH_SHARDS_MAX];

        fhd_shard_engines(d, es);
        fh_engine_snapshot_many(es, d->n_shards, NULL, NULL, out);
}

typedef struct shard_filter {
        const fh_daemon *d;
        size_t shard;
} shard_filter;

static bool in_shard(void *userdata, const fh_station *st) {
        const shard_filter *f = userdata;
        /* Stations are looked up by id in the daemon's registry: the
         * engines restored into may run another (a reload's). */
        const fh_station *own = fh_registry_find(fhd_registry(f->d), st->id, st->id_len);
        uint16_t slot = own ? f->d->sensor_slot[own->index] : 0;
        return (size_t) (fhd_shard_of_slot(f->d, slot) - f->d->shards) == f->shard;
}

int fhd_shards_restore(fh_daemon *d, fh_engine **es, const void *data, size_t len) {
        for (size_t i = 0; i < d->n_shards; i++) {
                shard_filter f = { d, i };
                int r = d->n_shards == 1 ? fh_engine_restore(es[i], data, len)
                                         : fh_engine_restore_some(es[i], data, len, in_shard, &f, NULL, NULL);
                if (r < 0)
                        return r;
        }
        return 0;
}

void fhd_stats_add(fh_engine_stats *restrict ret, const fh_engine_stats *restrict s) {
        ret->accepted += s->accepted;
        ret->late += s->late;
        ret->duplicates += s->duplicates;
        ret->dropped += s->dropped;
        for (int i = 0; i < FH_REJECT__MAX; i++)
                ret->rejected[i] += s->rejected[i];
        for (int i = 0; i < FH_EVENT__MAX; i++)
                ret->events[i] += s->events[i];
        ret->evaluations += s->evaluations;
        ret->ticks_skipped += s->ticks_skipped;
}

void fhd_shards_stats(const fh_daemon *d, fh_engine_stats *ret) {
        *ret = (fh_engine_stats) { 0 };
        for (size_t k = 0; k < d->n_shards; k++)
                fhd_stats_add(ret, fh_engine_stats_get(d->shards[k].engine));
}

/* After a restore into the first shard: each sensor's state moves to the
 * shard of its partition. */
void fhd_shards_spread(fh_daemon *d) {
        fhd_shard *first = &d->shards[0];

        if (d->n_shards == 1)
                return;
        for (size_t i = 1; i < d->n_shards; i++) {
                shard_filter f = { d, i };
                fh_buf snap = FH_BUF_NULL;
                fh_engine_snapshot(first->engine, in_shard, &f, &snap);
                /* Its own bytes: cannot be refused. */
                fh_engine_restore(d->shards[i].engine, snap.data, snap.len);
                fh_buf_free(&snap);
                fh_engine_forget(first->engine, in_shard, &f);
        }
}

/* ---- the shards' threads ----
 *
 * The loop consumes, one message at a time as before, and gives each
 * message to the shard of its partition, staged and handed over once per
 * turn (one lock per shard per turn, not per message). A shard parses,
 * applies the future check, ingests, and hands back a batch: each
 * message's outcome and its alerts, in order. The loop then does what
 * needs the daemon's state: the tracker (in partition order, since one
 * partition's messages go to one shard and come back in order), the sinks,
 * dead letters. Everything else that touches an engine runs on the loop
 * after fhd_shards_quiesce, with every shard idle. */

#define MAX_OUTSTANDING (4 * DRAIN_BATCH)

static void work_push(fhd_work_list *l, rd_kafka_message_t *m, uint16_t slot) {
        if (l->n == l->cap) {
                l->cap = l->cap ? l->cap * 2 : 256;
                l->v = fh_realloc(l->v, l->cap * sizeof(*l->v));
        }
        l->v[l->n++] = (fhd_work) { m, slot };
}

static fhd_read *read_push(fhd_batch *b) {
        if (b->n == b->cap) {
                b->cap = b->cap ? b->cap * 2 : 256;
                b->r = fh_realloc(b->r, b->cap * sizeof(*b->r));
        }
        return &b->r[b->n++];
}

static void on_shard_alert(void *userdata, const fh_alert *a) {
        fhd_batch *b = userdata;

        if (b->na == b->cap_a) {
                b->cap_a = b->cap_a ? b->cap_a * 2 : 64;
                b->a = fh_realloc(b->a, b->cap_a * sizeof(*b->a));
        }
        b->a[b->na++] = *a;
}

/* On the shard's thread: one message. */
static void shard_read(fhd_shard *sh, const fhd_work *w, int64_t now) {
        const fh_daemon_config *cfg = &sh->d->cfg;
        rd_kafka_message_t *m = w->m;
        fhd_read *r = read_push(&sh->mine);
        size_t alerts_before = sh->mine.na;
        char why[256];
        fh_reading rd;
        fh_reject rej;
        fh_outcome o;

        *r = (fhd_read) { .m = m, .slot = w->slot, .what = FHD_READ_OK };
        if (!m->payload || m->len == 0) {
                rej = FH_REJECT_MALFORMED_JSON;
                snprintf(why, sizeof(why), "empty message");
        } else
                rej = fh_reading_parse(m->payload, m->len, &rd, why, sizeof(why));
        if (rej != FH_REJECT_NONE) {
                fh_engine_count_reject(sh->engine, rej);
                r->what = FHD_READ_REJECTED;
                r->rej = rej;
                r->why = fh_strdup(why);
        } else if (!cfg->event_clock && rd.ts_ms > now + cfg->future_ms) {
                /* SPEC §3.3: a gauge with a wrong clock must not push
                 * windows into the future. */
                char ts[FH_TIME_RFC3339_MAX];
                fh_time_format_rfc3339(rd.ts_ms, cfg->tz_offset_min, ts);
                snprintf(why, sizeof(why), "timestamp %s is more than %lld s ahead of this machine's clock", ts,
                         (long long) (cfg->future_ms / 1000));
                r->what = FHD_READ_FUTURE;
                r->why = fh_strdup(why);
        } else if ((o = fh_engine_ingest_to(sh->engine, &rd, on_shard_alert, &sh->mine)),
                   fh_outcome_reject(o) != FH_REJECT_NONE) {
                fh_engine_explain(sh->engine, &rd, o, why, sizeof(why));
                r->what = FHD_READ_REJECTED;
                r->rej = fh_outcome_reject(o);
                r->why = fh_strdup(why);
        } else {
                r->station = (uint32_t) fh_engine_last_station(sh->engine)->index;
                r->ts = rd.ts_ms;
        }
        r->n_alerts = (uint32_t) (sh->mine.na - alerts_before);
}

/* Appends from's reads and alerts to to, emptying from. */
static void batch_move(fhd_batch *to, fhd_batch *from) {
        if (to->n == 0 && to->na == 0) {
                fhd_batch t = *to;
                *to = *from;
                *from = t;
                return;
        }
        for (size_t i = 0; i < from->n; i++)
                *read_push(to) = from->r[i];
        for (size_t i = 0; i < from->na; i++)
                on_shard_alert(to, &from->a[i]);
        from->n = from->na = 0;
}

static void *shard_main(void *arg) {
        fhd_shard *sh = arg;

        pthread_mutex_lock(&sh->mu);
        for (;;) {
                while (sh->in.n == 0 && !sh->quit)
                        pthread_cond_wait(&sh->work, &sh->mu);
                if (sh->quit)
                        break;
                fhd_work_list t = sh->taken;
                sh->taken = sh->in;
                sh->in = t;
                int64_t now = sh->now;
                sh->busy = true;
                pthread_mutex_unlock(&sh->mu);

                for (size_t i = 0; i < sh->taken.n; i++)
                        shard_read(sh, &sh->taken.v[i], now);
                sh->taken.n = 0;

                pthread_mutex_lock(&sh->mu);
                batch_move(&sh->done, &sh->mine);
                sh->busy = false;
                pthread_cond_broadcast(&sh->idle);
                pthread_mutex_unlock(&sh->mu);
                uv_async_send(&sh->d->shard_async);
                pthread_mutex_lock(&sh->mu);
        }
        pthread_mutex_unlock(&sh->mu);
        return NULL;
}

static void on_shard_async(uv_async_t *h) {
        fh_daemon *d = h->data;

        fhd_shards_collect(d);
        /* The input may have stopped at MAX_OUTSTANDING. */
        if (!d->stopping && !d->frozen)
                uv_idle_start(&d->drain_idle, fhd_on_drain_idle);
}

int fhd_shards_start(fh_daemon *d) {
        for (size_t i = 0; i < d->n_shards; i++)
                d->shards[i].d = d;
        /* One shard runs on the loop: a thread would only add the hand-over
         * (on two cores it cost a fifth of the throughput, docs/performance.md). */
        if (d->n_shards == 1)
                return 0;
        int r = uv_async_init(d->loop, &d->shard_async, on_shard_async);
        if (r < 0)
                return r;
        d->shard_async.data = d;
        d->shard_async_started = true;
        for (size_t i = 0; i < d->n_shards; i++) {
                fhd_shard *sh = &d->shards[i];
                pthread_mutex_init(&sh->mu, NULL);
                pthread_cond_init(&sh->work, NULL);
                pthread_cond_init(&sh->idle, NULL);
                r = -pthread_create(&sh->thread, NULL, shard_main, sh);
                if (r < 0) {
                        pthread_mutex_destroy(&sh->mu);
                        pthread_cond_destroy(&sh->work);
                        pthread_cond_destroy(&sh->idle);
                        return r;
                }
                sh->started = true;
        }
        return 0;
}

static void read_drop(fhd_read *r) {
        free(r->why);
        rd_kafka_message_destroy(r->m);
}

void fhd_shards_stop(fh_daemon *d) {
        for (size_t i = 0; d->shards && i < d->n_shards; i++) {
                fhd_shard *sh = &d->shards[i];
                if (sh->started) {
                        pthread_mutex_lock(&sh->mu);
                        sh->quit = true;
                        pthread_cond_broadcast(&sh->work);
                        pthread_mutex_unlock(&sh->mu);
                        pthread_join(sh->thread, NULL);
                        pthread_mutex_destroy(&sh->mu);
                        pthread_cond_destroy(&sh->work);
                        pthread_cond_destroy(&sh->idle);
                        sh->started = false;
                }
                /* Given but never processed, or never collected: their
                 * offsets were never stored, they are read again. */
                fhd_work_list *ls[] = { &sh->staged, &sh->in, &sh->taken };
                for (size_t k = 0; k < 3; k++) {
                        for (size_t j = 0; j < ls[k]->n; j++)
                                rd_kafka_message_destroy(ls[k]->v[j].m);
                        free(ls[k]->v);
                        *ls[k] = (fhd_work_list) { 0 };
                }
                fhd_batch *bs[] = { &sh->done, &sh->collected, &sh->mine };
                for (size_t k = 0; k < 3; k++) {
                        for (size_t j = 0; j < bs[k]->n; j++)
                                read_drop(&bs[k]->r[j]);
                        free(bs[k]->r);
                        free(bs[k]->a);
                        *bs[k] = (fhd_batch) { 0 };
                }
        }
}

static void collect_read(fh_daemon *d, const fhd_read *r, const fh_alert *alerts);

void fhd_shards_give(fh_daemon *d, rd_kafka_message_t *m) {
        uint16_t slot = fhd_slot_of_message(d, m);
        fhd_shard *sh = fhd_shard_of_slot(d, slot);

        if (!sh->started) {
                /* On the loop, at once. */
                fhd_work w = { m, slot };
                shard_read(sh, &w, d->batch_now);
                collect_read(d, &sh->mine.r[0], sh->mine.a);
                read_drop(&sh->mine.r[0]);
                sh->mine.n = sh->mine.na = 0;
                return;
        }
        work_push(&sh->staged, m, slot);
        d->outstanding++;
        if (sh->staged.n >= 256)
                fhd_shards_flush(d);
}

bool fhd_shards_full(const fh_daemon *d) {
        return d->outstanding >= MAX_OUTSTANDING;
}

void fhd_shards_flush(fh_daemon *d) {
        for (size_t i = 0; i < d->n_shards; i++) {
                fhd_shard *sh = &d->shards[i];
                if (sh->staged.n == 0)
                        continue;
                pthread_mutex_lock(&sh->mu);
                if (sh->in.n == 0) {
                        fhd_work_list t = sh->in;
                        sh->in = sh->staged;
                        sh->staged = t;
                } else {
                        for (size_t k = 0; k < sh->staged.n; k++)
                                work_push(&sh->in, sh->staged.v[k].m, sh->staged.v[k].slot);
                        sh->staged.n = 0;
                }
                sh->now = d->batch_now;
                pthread_cond_signal(&sh->work);
                pthread_mutex_unlock(&sh->mu);
        }
}

/* On the loop: one message's outcome, as handle_message did it when the
 * loop ingested. */
static void collect_read(fh_daemon *d, const fhd_read *r, const fh_alert *alerts) {
        rd_kafka_message_t *m = r->m;
        fhd_source src = { d, fh_tracker_begin(d->tracker, rd_kafka_topic_name(m->rkt), m->partition, m->offset) };

        for (uint32_t i = 0; i < r->n_alerts; i++)
                fhd_on_message_alert(&src, &alerts[i]);
        if (r->what == FHD_READ_REJECTED)
                fhd_dead_letter(d, src.track, m, fh_reject_name(r->rej), r->why);
        else if (r->what == FHD_READ_FUTURE) {
                d->future_rejected++;
                fhd_dead_letter(d, src.track, m, "future_timestamp", r->why);
        } else {
                if (r->ts > d->newest_ts)
                        d->newest_ts = r->ts;
                /* Remember the sensor's partition: its state moves with it,
                 * and after a crash only its alerts are looked for again. */
                if (d->sensor_slot[r->station] == 0)
                        d->sensor_slot[r->station] = r->slot;
        }
        fh_tracker_release(d->tracker, src.track);
}

void fhd_shards_collect(fh_daemon *d) {
        if (d->collecting)
                return;
        d->collecting = true;
        for (size_t i = 0; i < d->n_shards; i++) {
                fhd_shard *sh = &d->shards[i];
                fhd_batch *b = &sh->collected;
                if (!sh->started)
                        continue;
                pthread_mutex_lock(&sh->mu);
                batch_move(b, &sh->done);
                pthread_mutex_unlock(&sh->mu);
                size_t a = 0;
                for (size_t k = 0; k < b->n; k++) {
                        collect_read(d, &b->r[k], &b->a[a]);
                        a += b->r[k].n_alerts;
                        read_drop(&b->r[k]);
                        d->outstanding--;
                }
                b->n = b->na = 0;
        }
        d->collecting = false;
}

void fhd_shards_quiesce(fh_daemon *d) {
        fhd_shards_flush(d);
        for (size_t i = 0; i < d->n_shards; i++) {
                fhd_shard *sh = &d->shards[i];
                if (!sh->started)
                        continue;
                pthread_mutex_lock(&sh->mu);
                while (sh->in.n > 0 || sh->busy)
                        pthread_cond_wait(&sh->idle, &sh->mu);
                pthread_mutex_unlock(&sh->mu);
        }
        fhd_shards_collect(d);
}
