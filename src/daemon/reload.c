/* Reload (SIGHUP): the new rules and registry loaded into a new engine and
 * the old engine's state carried into it, off the loop. Runs on the loop
 * thread, except reload_load, reload_carry and engine_free_work, which run
 * on libuv's worker threads. */
#include "daemon-internal.h"

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
        fh_engine **ns;           /* the new engines, one per shard */
        fh_diags diags;
        int r;
        uint64_t t0, frozen_t0;
} reload_job;

typedef struct fh_engine_free_req {
        uv_work_t req;
        fh_engine **es;
        size_t n;
} fh_engine_free_req;

static void engine_free_work(uv_work_t *req) {
        fh_engine_free_req *fr = req->data;
        fhd_engines_free(fr->es, fr->n);
}

static void engine_free_done(uv_work_t *req, int status) {
        (void) status;
        free(req->data);
}

static void reload_load(uv_work_t *req) {
        reload_job *j = req->data;
        fh_engine *ne = NULL;

        j->r = fh_load_engine(j->d->cfg.rules, j->d->cfg.stations, &j->ecfg, &ne, &j->diags);
        if (j->r == 0)
                j->ns = fhd_engines_new(ne, j->d->n_shards, j->d);
}

static void reload_carry(uv_work_t *req) {
        reload_job *j = req->data;
        fh_buf snap = FH_BUF_NULL;

        /* Carry windows and alert states across: rules that did not change
         * keep their state; changed ones start from none. Each sensor to
         * the same shard as before. */
        fhd_shards_snapshot(j->d, &snap);
        j->r = fhd_shards_restore(j->d, j->ns, snap.data, snap.len);
        fh_buf_free(&snap);
}

static void reload_end(fh_daemon *d, reload_job *j) {
        fhd_engines_free(j->ns, d->n_shards);
        fh_diags_clear(&j->diags);
        free(j);
        d->reloading = false;
        if (d->frozen) {
                d->frozen = false;
                if (!d->stopping)
                        uv_idle_start(&d->drain_idle, fhd_on_drain_idle);
        }
        if (!d->stopping)
                sd_notify(0, "READY=1");
        if (d->reload_again && !d->stopping) {
                d->reload_again = false;
                fhd_reload(d);
        }
}

static void reload_swapped(uv_work_t *req, int status) {
        reload_job *j = req->data;
        fh_daemon *d = j->d;
        fh_engine **ns = j->ns;

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
         * raised: end it, through the old engines, which still know how the
         * rule and the station were described. What becomes of a pair is
         * the new model's, the same in every new shard. */
        fh_engine_stats before, after;
        fhd_shards_stats(d, &before);
        for (size_t k = 0; k < d->n_shards; k++) {
                fh_engine *old = d->shards[k].engine;
                int64_t now = d->cfg.event_clock && fh_engine_clock(old) != FH_TIME_NONE ? fh_engine_clock(old)
                                                                                        : wall_ms();
                fh_engine_end_orphans(old, ns[k], now);
        }
        fhd_shards_stats(d, &after);
        uint64_t ended = after.events[FH_EVENT_CLEARED] - before.events[FH_EVENT_CLEARED];
        /* Stations may have moved in the new registry: carry partitions by id. */
        const fh_registry *oreg = fhd_registry(d), *nreg = fh_engine_registry(ns[0]);
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
        fhd_stats_total(d, &total);
        d->stats_before = total;
        /* Freeing a large engine takes long too (0.7 s at 100,000 stations):
         * on a worker, and nothing refers to it any more. */
        fh_engine_free_req *fr = fh_calloc(1, sizeof(*fr));
        fr->es = fh_calloc(d->n_shards, sizeof(*fr->es));
        fr->n = d->n_shards;
        fr->req.data = fr;
        /* The shards are idle (frozen): their threads see the new engine
         * with their next batch, through its lock. */
        for (size_t k = 0; k < d->n_shards; k++) {
                fr->es[k] = d->shards[k].engine;
                d->shards[k].engine = ns[k];
        }
        free(ns);
        j->ns = NULL;
        uv_queue_work(d->loop, &fr->req, engine_free_work, engine_free_done);
        /* The closing events are in the outbox now: a checkpoint makes them
         * and the new state survive a crash (a restart with the new rules
         * from an older state would drop those alerts without a word). */
        if (ended > 0)
                fhd_checkpoint_start(d);
        log_notice("reloaded rules=%zu stations=%zu ended=%llu in %.1f s (input held for %.1f s)",
                   fh_engine_rules(fhd_engine0(d))->n_rules, fhd_registry(d)->n_stations, (unsigned long long) ended,
                   (double) (uv_hrtime() - j->t0) / 1e9, (double) (uv_hrtime() - j->frozen_t0) / 1e9);
        reload_end(d, j);
        /* Boundaries passed while frozen are evaluated now. */
        if (!d->cfg.event_clock && !d->stopping)
                fhd_on_tick(&d->tick_timer);
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
        fhd_shards_quiesce(d);
        j->frozen_t0 = uv_hrtime();
        uv_queue_work(d->loop, &j->req, reload_carry, reload_swapped);
}

void fhd_reload(fh_daemon *d) {
        if (d->reloading || d->rebalance) {
                /* The files may have changed again since the running reload
                 * read them. */
                d->reload_again = true;
                return;
        }
        reload_job *j = fh_calloc(1, sizeof(*j));
        j->d = d;
        j->ecfg = *fh_engine_config_get(fhd_engine0(d));
        j->diags = (fh_diags) FH_DIAGS_NULL;
        j->req.data = j;
        j->t0 = uv_hrtime();
        d->reloading = true;
        sd_notifyf(0, "RELOADING=1\nMONOTONIC_USEC=%llu", (unsigned long long) (uv_hrtime() / 1000));
        uv_queue_work(d->loop, &j->req, reload_load, reload_loaded);
}

void fh_daemon_reload(fh_daemon *d) {
        fhd_reload(d);
}
