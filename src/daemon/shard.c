/* Shards: the engine's state split by input partition. Each slot (an
 * input partition this instance has read, rebalance.c) belongs to one
 * shard, chosen when the slot is made and never changed, and the state of
 * a sensor lives in the engine of its partition's shard. The engines share
 * one model (the rules bound to the registry). Runs on the loop thread. */
#include "daemon-internal.h"

fhd_shard *fhd_shards_new(fh_engine *e0, size_t n, fh_daemon *d) {
        fhd_shard *shards = fh_calloc(n, sizeof(*shards));

        shards[0].engine = e0;
        for (size_t i = 1; i < n; i++)
                /* Cannot fail with a model. */
                fh_engine_new_shared(&shards[i].engine, fh_engine_model(e0), fh_engine_config_get(e0));
        for (size_t i = 0; i < n; i++)
                fh_engine_set_alert_cb(shards[i].engine, fhd_on_alert, d);
        return shards;
}

void fhd_shards_free(fhd_shard *shards, size_t n) {
        for (size_t i = 0; shards && i < n; i++)
                fh_engine_free(shards[i].engine);
        free(shards);
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

int fhd_shards_restore(fh_daemon *d, fhd_shard *shards, const void *data, size_t len) {
        for (size_t i = 0; i < d->n_shards; i++) {
                shard_filter f = { d, i };
                int r = d->n_shards == 1 ? fh_engine_restore(shards[i].engine, data, len)
                                         : fh_engine_restore_some(shards[i].engine, data, len, in_shard, &f, NULL,
                                                                  NULL);
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

void fhd_shards_stats(const fhd_shard *shards, size_t n, fh_engine_stats *ret) {
        *ret = (fh_engine_stats) { 0 };
        for (size_t k = 0; k < n; k++)
                fhd_stats_add(ret, fh_engine_stats_get(shards[k].engine));
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
