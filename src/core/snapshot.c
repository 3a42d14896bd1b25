/* Engine state to bytes and back.
 *
 * Windows are saved as the raw samples they hold, not as running sums: a
 * restore rebuilds the aggregates for whatever rules the receiving engine
 * runs, so a snapshot survives a reload with new windows, a move to another
 * instance, and an upgrade that changes the in-memory layout.
 *
 * Layout (little-endian), version 2:
 *   "FHSNAP01"  u32 version  i64 clock  u32 n_sensors
 *   per sensor: str id  i64 latest  u32 n_recent  i64[n]
 *               u32 n_fields  { str field  u32 n  { i64 ts  f64 v }[n] }[n_fields]
 *               u32 n_pairs   { str rule  u64 hash  u8 level  i64 run[5]  i64 wait  i64 raised
 *                               u8 last_event  u8 last_previous  i64 last_ts  f64 last_value }[n_pairs]
 *   u64 FNV-1a of everything before it
 * Restore checks the whole snapshot before it changes anything. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fenghuo/engine.h"
#include "fenghuo/timeutil.h"
#include "engine-internal.h"

#define SNAP_MAGIC "FHSNAP01"
#define SNAP_VERSION 2u
#define SNAP_MAX_ITEMS 100000000u

static void put_i64(fh_buf *b, int64_t v) {
        fh_buf_u64(b, (uint64_t) v);
}

static void snapshot_sensor(const fh_engine *e, const fh_sensor *s, fh_buf *out) {
        const fh_profile *p = s->prof;

        fh_buf_str(out, s->st->id, s->st->id_len);
        put_i64(out, s->latest);
        fh_buf_u32(out, (uint32_t) s->recent.len);
        for (size_t i = 0; i < s->recent.len; i++)
                put_i64(out, fh_recent_at(&s->recent, i));

        fh_buf_u32(out, p->n_stores);
        for (uint32_t k = 0; k < p->n_stores; k++) {
                const fh_store *st = &s->stores[k];
                uint32_t from = 0, end = st->r.len;
                /* A store lets old samples go only when it next advances;
                 * those outside every window (but the newest) are not
                 * state, and a restore would drop them: leaving them out
                 * makes a snapshot of a restored engine the same bytes. */
                while (end - from > 1 && fh_store_at(st, from).ts <= st->now - st->keep_ms)
                        from++;
                fh_buf_str(out, p->stores[k].name, p->stores[k].name_len);
                fh_buf_u32(out, end - from);
                for (uint32_t i = from; i < end; i++) {
                        fh_sample x = fh_store_at(st, i);
                        put_i64(out, x.ts);
                        fh_buf_f64(out, x.v);
                }
        }

        fh_buf_u32(out, p->n_rules);
        for (uint32_t i = 0; i < p->n_rules; i++) {
                const fh_rule *r = &e->rs->rules[p->rules[i]];
                const fh_pair *pr = &s->pairs[i];
                fh_buf_str(out, r->id, strlen(r->id));
                fh_buf_u64(out, r->hash);
                fh_buf_u8(out, pr->level);
                for (int l = 0; l < FH_LEVEL__MAX; l++)
                        put_i64(out, pr->run[l]);
                put_i64(out, pr->wait);
                put_i64(out, pr->raised);
                fh_buf_u8(out, pr->last_event);
                fh_buf_u8(out, pr->last_previous);
                put_i64(out, pr->last_ts);
                fh_buf_f64(out, pr->last_value);
        }
}

void fh_engine_snapshot(const fh_engine *e, fh_sensor_filter filter, void *userdata, fh_buf *out) {
        fh_engine_snapshot_many(&e, 1, filter, userdata, out);
}

void fh_engine_snapshot_many(const fh_engine *const *es, size_t n_es, fh_sensor_filter filter, void *userdata,
                             fh_buf *out) {
        size_t start = out->len, count_at;
        uint32_t n = 0;
        int64_t clock = FH_TIME_NONE;

        for (size_t k = 0; k < n_es; k++)
                if (es[k]->clock != FH_TIME_NONE && (clock == FH_TIME_NONE || es[k]->clock > clock))
                        clock = es[k]->clock;
        fh_buf_append(out, SNAP_MAGIC, 8);
        fh_buf_u32(out, SNAP_VERSION);
        put_i64(out, clock);
        count_at = out->len;
        fh_buf_u32(out, 0);
        for (size_t k = 0; k < n_es; k++) {
                const fh_engine *e = es[k];
                for (size_t i = 0; i < e->reg->n_stations; i++) {
                        const fh_sensor *s = e->sensors[i];
                        /* A sensor that never sent a reading has no state to keep. */
                        if (!s || s->latest == FH_TIME_NONE)
                                continue;
                        if (filter && !filter(userdata, s->st))
                                continue;
                        snapshot_sensor(e, s, out);
                        n++;
                }
        }
        for (int i = 0; i < 4; i++)
                out->data[count_at + i] = (char) (n >> (8 * i));
        fh_buf_u64(out, fh_checksum(out->data + start, out->len - start));
}

static int rd_i64(fh_rd *r, int64_t *ret) {
        uint64_t u;
        int k = fh_rd_u64(r, &u);
        if (k < 0)
                return k;
        *ret = (int64_t) u;
        return 0;
}

static bool time_ok(int64_t t) {
        return t >= FH_TIME_MIN_MS && t <= FH_TIME_MAX_MS;
}

/* A state machine time: unset, or a real time. Anything else would make
 * the engine's time arithmetic overflow on the next evaluation. */
static bool time_or_none_ok(int64_t t) {
        return t == FH_TIME_NONE || time_ok(t);
}

static bool pair_ok(const fh_pair *p) {
        for (int l = 0; l < FH_LEVEL__MAX; l++)
                if (!time_or_none_ok(p->run[l]))
                        return false;
        if (!time_or_none_ok(p->wait) || !time_or_none_ok(p->raised) || !time_or_none_ok(p->last_ts))
                return false;
        if (p->last_event >= FH_EVENT__MAX || p->last_previous >= FH_LEVEL__MAX)
                return false;
        /* An open alert has its alert_id time and the event that told it;
         * a closed one has no alert_id. */
        if (p->level == FH_LEVEL_NONE)
                return p->raised == FH_TIME_NONE;
        return p->raised != FH_TIME_NONE && p->last_ts != FH_TIME_NONE;
}

/* One pass that either only checks (e == NULL) or applies. Keeping the two
 * in one function means what is checked is exactly what is applied. */
typedef struct walk_to {
        fh_sensor_filter filter;
        void *filter_data;
        fh_station_fn fn;
        void *userdata;
} walk_to;

static int walk(fh_engine *e, fh_rd *rd, uint32_t n_sensors, const walk_to *to) {
        for (uint32_t si = 0; si < n_sensors; si++) {
                const char *id, *name;
                size_t id_len, name_len;
                int64_t latest;
                uint32_t n_recent, n_fields, n_pairs;
                fh_sensor *s = NULL;

                if (fh_rd_str(rd, &id, &id_len) < 0 || rd_i64(rd, &latest) < 0 || fh_rd_u32(rd, &n_recent) < 0)
                        return -EBADMSG;
                if (id_len == 0 || id_len > FH_SENSOR_ID_MAX || n_recent > SNAP_MAX_ITEMS ||
                    (size_t) n_recent * 8 > rd->n - rd->off)
                        return -EBADMSG;
                if (!time_ok(latest))
                        return -EBADMSG;
                if (e) {
                        const fh_station *st = fh_registry_find(e->reg, id, id_len);
                        if (st && (!to->filter || to->filter(to->filter_data, st))) {
                                if (to->fn)
                                        to->fn(to->userdata, st);
                                s = fh_engine_sensor(e, st->index);
                                fh_sensor_clear(s);
                                s->latest = latest;
                                for (uint32_t k = 0; k < s->prof->n_stores; k++)
                                        s->stores[k].now = latest;
                        }
                }
                /* Ascending and unique as written: anything else is not a
                 * snapshot (and would cost a quadratic insertion). */
                int64_t prev_recent = INT64_MIN;
                for (uint32_t i = 0; i < n_recent; i++) {
                        int64_t ts;
                        if (rd_i64(rd, &ts) < 0 || !time_ok(ts) || ts > latest || ts <= prev_recent)
                                return -EBADMSG;
                        prev_recent = ts;
                        if (s)
                                fh_recent_insert(&s->recent, ts, fh_recent_horizon(e, latest));
                }

                if (fh_rd_u32(rd, &n_fields) < 0 || n_fields > SNAP_MAX_ITEMS)
                        return -EBADMSG;
                for (uint32_t f = 0; f < n_fields; f++) {
                        uint32_t n;
                        fh_store *store = NULL;

                        if (fh_rd_str(rd, &name, &name_len) < 0 || fh_rd_u32(rd, &n) < 0)
                                return -EBADMSG;
                        if (n > SNAP_MAX_ITEMS || (size_t) n * 16 > rd->n - rd->off)
                                return -EBADMSG;
                        if (s)
                                for (uint32_t k = 0; k < s->prof->n_stores; k++)
                                        if (s->prof->stores[k].name_len == name_len &&
                                            memcmp(s->prof->stores[k].name, name, name_len) == 0)
                                                store = &s->stores[k];
                        int64_t prev = INT64_MIN;
                        fh_sample *tmp = store && n ? fh_malloc(n * sizeof(*tmp)) : NULL;
                        for (uint32_t i = 0; i < n; i++) {
                                int64_t ts;
                                double v;
                                if (rd_i64(rd, &ts) < 0 || fh_rd_f64(rd, &v) < 0 || ts <= prev ||
                                    !time_ok(ts) || ts > latest || !isfinite(v)) {
                                        free(tmp);
                                        return -EBADMSG;
                                }
                                prev = ts;
                                if (tmp)
                                        tmp[i] = (fh_sample) { ts, v };
                        }
                        if (store)
                                fh_store_load(store, tmp, n, latest);
                        free(tmp);
                }

                if (fh_rd_u32(rd, &n_pairs) < 0 || n_pairs > SNAP_MAX_ITEMS)
                        return -EBADMSG;
                for (uint32_t i = 0; i < n_pairs; i++) {
                        const char *rid;
                        size_t rid_len;
                        uint64_t hash;
                        uint8_t level;
                        fh_pair pr;

                        if (fh_rd_str(rd, &rid, &rid_len) < 0 || fh_rd_u64(rd, &hash) < 0 || fh_rd_u8(rd, &level) < 0)
                                return -EBADMSG;
                        if (level >= FH_LEVEL__MAX)
                                return -EBADMSG;
                        pr.level = level;
                        for (int l = 0; l < FH_LEVEL__MAX; l++)
                                if (rd_i64(rd, &pr.run[l]) < 0)
                                        return -EBADMSG;
                        if (rd_i64(rd, &pr.wait) < 0 || rd_i64(rd, &pr.raised) < 0 ||
                            fh_rd_u8(rd, &pr.last_event) < 0 || fh_rd_u8(rd, &pr.last_previous) < 0 ||
                            rd_i64(rd, &pr.last_ts) < 0 || fh_rd_f64(rd, &pr.last_value) < 0)
                                return -EBADMSG;
                        if (!pair_ok(&pr))
                                return -EBADMSG;
                        if (!s)
                                continue;
                        for (uint32_t k = 0; k < s->prof->n_rules; k++) {
                                const fh_rule *r = &e->rs->rules[s->prof->rules[k]];
                                if (r->hash == hash && strlen(r->id) == rid_len && memcmp(r->id, rid, rid_len) == 0)
                                        s->pairs[k] = pr;
                        }
                }
        }
        return rd->off == rd->n ? 0 : -EBADMSG;
}

int fh_engine_restore(fh_engine *e, const void *data, size_t len) {
        return fh_engine_restore_some(e, data, len, NULL, NULL, NULL, NULL);
}

int fh_engine_restore_each(fh_engine *e, const void *data, size_t len, fh_station_fn fn, void *userdata) {
        return fh_engine_restore_some(e, data, len, NULL, NULL, fn, userdata);
}

int fh_engine_restore_some(fh_engine *e, const void *data, size_t len, fh_sensor_filter filter, void *filter_data,
                           fh_station_fn fn, void *userdata) {
        const walk_to to = { filter, filter_data, fn, userdata };
        const uint8_t *p = data;
        fh_rd rd;
        uint32_t version, n;
        int64_t clock;
        uint64_t sum;
        int r;

        if (len < 8 + 4 + 8 + 4 + 8 || memcmp(p, SNAP_MAGIC, 8) != 0)
                return -EBADMSG;
        rd = (fh_rd) { p, len - 8, 8 };
        {
                fh_rd tail = { p + len - 8, 8, 0 };
                if (fh_rd_u64(&tail, &sum) < 0 || sum != fh_checksum(p, len - 8))
                        return -EBADMSG;
        }
        if (fh_rd_u32(&rd, &version) < 0 || version != SNAP_VERSION)
                return -EBADMSG;
        if (rd_i64(&rd, &clock) < 0 || !time_or_none_ok(clock) || fh_rd_u32(&rd, &n) < 0)
                return -EBADMSG;

        size_t body = rd.off;
        r = walk(NULL, &rd, n, &to);
        if (r < 0)
                return r;
        rd.off = body;
        r = walk(e, &rd, n, &to);
        if (r < 0)
                return r;   /* cannot happen: the same bytes passed the check */
        if (clock != FH_TIME_NONE && (e->clock == FH_TIME_NONE || clock > e->clock))
                e->clock = clock;
        return 0;
}

void fh_engine_forget(fh_engine *e, fh_sensor_filter filter, void *userdata) {
        for (size_t i = 0; i < e->reg->n_stations; i++) {
                fh_sensor *s = e->sensors[i];
                /* Freed, not cleared: a revoked partition's sensors leave
                 * no memory behind. */
                if (s && (!filter || filter(userdata, s->st)))
                        fh_engine_sensor_drop(e, i);
        }
}
