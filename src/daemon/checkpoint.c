/* Ticks and checkpoints: the tick timer, and the checkpoint written by a
 * forked child from a copy-on-write image of the engine, whose positions
 * become the durable limit on committed offsets. Runs on the loop thread;
 * the child (fh_state_save_fork, state.c) only writes the state file. */
#include "daemon-internal.h"

/* ---- ticks, checkpoints, stats ---- */

void fhd_on_tick(uv_timer_t *h) {
        fh_daemon *d = h->data;
        int64_t now = wall_ms(), t = d->cfg.tick_ms;

        if (d->frozen || fhd_revoking(d)) {
                /* A reload is reading the engine, or a revocation handing
                 * its state over; the boundaries passed meanwhile are
                 * evaluated afterwards. */
                uv_timer_start(&d->tick_timer, fhd_on_tick, 100, 0);
                return;
        }
        /* Boundaries follow wall time; a late timer still evaluates every
         * boundary it passed. */
        /* Each shard's sensors, shard after shard: SPEC's tick order
         * (rule, then sensor) holds within a shard. */
        fhd_shards_quiesce(d);
        fhd_shards_tick(d, now);
        uv_timer_start(&d->tick_timer, fhd_on_tick, (uint64_t) ((fh_floor_div(now, t) + 1) * t - now), 0);
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

        /* Every message given to a shard is in its engine and tracked. */
        fhd_shards_quiesce(d);
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
                it->sinks &= FH_SINK_KAFKA | FH_SINK_REDIS | FH_SINK_FILE;
        }
        const fh_registry *reg = fhd_registry(d);
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
void fhd_checkpoint_reap(fh_daemon *d, bool block) {
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
                fhd_checkpoint_start(d);
        }
}

/* The periodic checkpoint: the cut is taken here, serialising and fsync
 * happen in a forked child, so the loop pays only for the fork (and later
 * for the pages it writes while the child runs). One at a time: one asked
 * for while the previous file is still being written starts when it is. */
void fhd_checkpoint_start(fh_daemon *d) {
        fh_checkpoint c;
        pid_t pid;
        int r;

        if (!d->cfg.state_dir)
                return;
        fhd_checkpoint_reap(d, false);
        if (d->checkpoint_pid) {
                if (!d->checkpoint_again)
                        log_warning("the previous checkpoint is still being written; this one follows it");
                d->checkpoint_again = true;
                return;
        }
        checkpoint_cut(d, &c);
        d->checkpoint_t0 = uv_hrtime();
        const fh_engine *es[FH_SHARDS_MAX];
        fhd_shard_engines(d, es);
        r = fh_state_save_fork(d->cfg.state_dir, es, d->n_shards, &c, &pid);
        if (r == 0) {
                d->checkpoint_pid = pid;
                d->checkpoint_positions = c.positions;
                c.positions = (fh_offsets) { 0 };
        } else {
                log_warning("cannot fork to write the checkpoint (%s); writing it on the loop", strerror(-r));
                checkpoint_done(d, fh_state_save(d->cfg.state_dir, es, d->n_shards, &c), &c.positions);
        }
        checkpoint_cut_free(&c);
}

/* A checkpoint written before returning, for the shutdown. */
int fhd_checkpoint(fh_daemon *d) {
        fh_checkpoint c;
        int r;

        if (!d->cfg.state_dir)
                return 0;
        /* A child still writing an older cut must not rename it over this one. */
        fhd_checkpoint_reap(d, true);
        checkpoint_cut(d, &c);
        const fh_engine *es[FH_SHARDS_MAX];
        fhd_shard_engines(d, es);
        r = fh_state_save(d->cfg.state_dir, es, d->n_shards, &c);
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

void fhd_on_checkpoint(uv_timer_t *h) {
        drop_suppression_when_caught_up(h->data);
        fhd_checkpoint_start(h->data);
}
