/* The daemon's lifecycle: fh_daemon_new (setup), signals, stop and
 * shutdown, fh_daemon_free, and fh_daemon_check / fh_daemon_main. Runs on
 * the loop thread. The other concerns live next to it: kafka_in.c,
 * outbox.c, rebalance.c, checkpoint.c, reload.c and metrics.c, sharing
 * daemon-internal.h. */
#include "daemon-internal.h"

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
        if (d->shard_async_started)
                close_one(d, (uv_handle_t *) &d->shard_async);
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
        if (fhd_revoking(d))
                /* Before the last checkpoint, which must not hold the
                 * sensors handed over. */
                fhd_revoke_finish_now(d, d->rebalance);
        if (undelivered)
                log_err("stopping with %zu alerts not confirmed by every sink", undelivered);

        /* State first: the commit goes no further than the state saved. */
        if (fhd_checkpoint(d) == 0 && d->cfg.state_dir)
                log_info("state saved to %s/state", d->cfg.state_dir);
        fhd_store_offsets(d, NULL);
        if (d->consumer) {
                rd_kafka_resp_err_t e = rd_kafka_commit(d->consumer, NULL, 0);
                if (e && e != RD_KAFKA_RESP_ERR__NO_OFFSET)
                        log_warning("final commit: %s", rd_kafka_err2str(e));
        }
        fhd_log_stats(d);

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
        /* Messages already polled are processed first: what is "in hand"
         * then is what the sinks have not confirmed yet. */
        fhd_shards_quiesce(d);
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
                fhd_reload(d);
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
        fh_engine *e0 = NULL;
        r = fh_load_engine(d->cfg.rules, d->cfg.stations, &ecfg, &e0, &diags);
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
        long cpus = d->cfg.shards > 0 ? d->cfg.shards : sysconf(_SC_NPROCESSORS_ONLN);
        d->n_shards = cpus < 1 ? 1 : cpus > FH_SHARDS_MAX ? FH_SHARDS_MAX : (size_t) cpus;
        fh_engine **es = fhd_engines_new(e0, d->n_shards, d);
        d->shards = fh_calloc(d->n_shards, sizeof(*d->shards));
        for (size_t i = 0; i < d->n_shards; i++)
                d->shards[i].engine = es[i];
        free(es);
        r = fhd_cap_init(d);
        if (r < 0)
                goto fail;
        d->sensor_slot = fh_calloc(fhd_registry(d)->n_stations + 1, sizeof(*d->sensor_slot));

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
                /* Into the first shard, then each sensor into the shard
                 * of its partition, once they are known. */
                r = fh_state_load(d->cfg.state_dir, fhd_engine0(d), &cp);
                if (r == 0) {
                        restored = true;
                        for (size_t i = 0; i < cp.positions.n; i++)
                                fh_offsets_add(&d->durable, cp.positions.v[i].topic, cp.positions.v[i].partition,
                                               cp.positions.v[i].offset);
                        d->resume = cp.positions;
                        cp.positions = (fh_offsets) { 0 };
                        log_info("state restored from %s/state partitions=%zu unconfirmed=%zu",
                                 d->cfg.state_dir, d->resume.n, cp.n_outbox);
                        const fh_registry *reg = fhd_registry(d);
                        /* Slots in the order the file lists them. */
                        for (size_t i = 0; i < cp.partitions.n; i++)
                                fhd_slot_of(d, cp.partitions.v[i].topic, cp.partitions.v[i].partition, true);
                        for (size_t i = 0; i < cp.n_sensors; i++) {
                                const fh_station *st = fh_registry_find(reg, cp.sensor_ids[i], strlen(cp.sensor_ids[i]));
                                const fh_offset *po = &cp.partitions.v[cp.sensor_part[i]];
                                if (st)
                                        d->sensor_slot[st->index] = fhd_slot_of(d, po->topic, po->partition, true);
                        }
                        fhd_shards_spread(d);
                } else if (r != -ENOENT)
                        log_err("cannot restore state from %s/state: %s; starting from committed offsets",
                                d->cfg.state_dir, strerror(-r));
        }
        if (d->cfg.alerts_topic || d->cfg.cap_topic) {
                char err[512];
                const char *out_topics[] = { d->cfg.alerts_topic, d->cfg.cap_topic };
                /* Every partition gets a watermark from the start, so a
                 * checkpoint always says where to look after a crash. */
                for (size_t k = 0; k < FH_ARRAY_SIZE(out_topics); k++)
                        if (out_topics[k] &&
                            fh_kafka_watermarks(&d->cfg, out_topics[k], &d->watermarks, err, sizeof(err)) < 0)
                                log_warning("cannot read the watermarks of %s: %s", out_topics[k], err);
                if (restored && cp.watermarks.n > 0) {
                        d->suppress = fh_strset_new();
                        /* All of them: a sensor first heard of after the
                         * checkpoint has no known partition yet. What is not
                         * regenerated here is dropped once caught up. */
                        long n = fh_kafka_scan_published(&d->cfg, &cp.watermarks, NULL, NULL, d->suppress,
                                                         30000, err, sizeof(err));
                        if (n < 0)
                                log_err("cannot read back the alerts and CAP topics after the last checkpoint: %s; "
                                        "alerts published since may be published again", err);
                        else
                                log_info("%ld alerts and CAP messages were published after the last checkpoint; "
                                         "they will not be published again", n);
                        d->scan_from = cp.watermarks;
                        cp.watermarks = (fh_offsets) { 0 };
                }
        }
        /* Without a state to go on from, one is written before anything is
         * consumed: it holds the alerts topic's watermarks, so a crash
         * before the first periodic checkpoint reads back what this run
         * published, and it is what lets offsets be committed at all. */
        if (d->cfg.state_dir && !restored && fhd_checkpoint(d) == 0)
                log_info("initial state written to %s/state", d->cfg.state_dir);
        r = fhd_kafka_start(d);
        if (r < 0)
                goto fail;

        if (d->cfg.redis_enabled) {
                r = fh_redis_new(&d->redis, loop, &d->cfg.redis, fhd_on_redis_ack, d);
                if (r < 0) {
                        log_err("failed to set up Redis: %s", strerror(-r));
                        goto fail;
                }
                fh_redis_set_state_cb(d->redis, fhd_on_redis_state, d);
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
        if (d->producer && (r = fhd_wake_init(d, &d->pwake, d->pq)) < 0) {
                log_err("failed to watch the Kafka producer's queue: %s", strerror(-r));
                goto abort;
        }
        if ((r = fhd_wake_init(d, &d->cwake, d->cq)) < 0) {
                log_err("failed to watch the Kafka consumer's queue: %s", strerror(-r));
                goto abort;
        }
        if (d->hooks.install_signals && (r = signals_init(d)) < 0) {
                log_err("failed to install signal handlers: %s", uv_strerror(r));
                goto abort;
        }
        if ((r = fhd_shards_start(d)) < 0) {
                log_err("failed to start the shards' threads: %s", strerror(-r));
                goto abort;
        }
        if ((r = fhd_kafka_subscribe(d)) < 0)
                goto abort;
        fhd_resend_outbox(d, &cp);
        fh_checkpoint_clear(&cp);

        if (!d->cfg.event_clock) {
                /* Not the boundaries of the time we were down: the readings
                 * of that time are still in Kafka, unread, and would make
                 * every sensor look silent. */
                fhd_shards_set_clock(d, wall_ms());
                fhd_on_tick(&d->tick_timer);
        }
        if (d->cfg.checkpoint_ms > 0)
                uv_timer_start(&d->checkpoint_timer, fhd_on_checkpoint, (uint64_t) d->cfg.checkpoint_ms,
                               (uint64_t) d->cfg.checkpoint_ms);
        if (d->cfg.stats_ms > 0)
                uv_timer_start(&d->stats_timer, fhd_on_stats, (uint64_t) d->cfg.stats_ms, (uint64_t) d->cfg.stats_ms);
        uv_timer_start(&d->commit_timer, fhd_on_commit_timer, 200, 200);

        if (sd_watchdog_enabled(0, &d->watchdog_usec) <= 0)
                d->watchdog_usec = 0;

        log_notice("started rules=%zu stations=%zu shards=%zu brokers=%s group=%s redis=%s",
                   fh_engine_rules(fhd_engine0(d))->n_rules, fhd_registry(d)->n_stations, d->n_shards,
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
        return d->shards ? fhd_engine0(d) : NULL;
}

void fh_daemon_foreach_active(fh_daemon *d, fh_alert_fn fn, void *userdata) {
        fhd_shards_quiesce(d);
        fhd_shards_foreach_active(d, fn, userdata);
}

void fh_daemon_engine_stats(fh_daemon *d, fh_engine_stats *ret) {
        fhd_shards_quiesce(d);
        fhd_shards_stats(d, ret);
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
        fhd_checkpoint_reap(d, true);
        /* Before the consumer goes: the shards hold its messages. */
        fhd_shards_stop(d);
        if (d->rebalance && !d->rebalance->in_worker)
                fhd_rebalance_free(d, d->rebalance);
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
        /* Only now: the producer sent the alerts' bytes from their payloads
         * (no copy), and may have read them until it was destroyed. */
        fhd_outs_free(d);
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
        fhd_cap_free(d);
        free(d->sensor_slot);
        for (size_t i = 1; i < d->n_slots; i++)
                free(d->slots[i].topic);
        free(d->slots);
        fh_tracker_free(d->tracker);
        for (size_t i = 0; d->shards && i < d->n_shards; i++)
                fh_engine_free(d->shards[i].engine);
        free(d->shards);
        free(d->slot_shard);
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
