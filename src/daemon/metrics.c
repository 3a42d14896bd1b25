/* Metrics and health: the consumer lag, the periodic stats line in the log
 * and the Prometheus text file. Runs on the loop thread. */
#include "daemon-internal.h"

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
 * current ones'. */
void fhd_stats_total(const fh_daemon *d, fh_engine_stats *restrict ret) {
        fhd_shards_stats(d, ret);
        fhd_stats_add(ret, &d->stats_before);
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

void fhd_log_stats(fh_daemon *d) {
        fh_engine_stats total;
        const fh_engine_stats *s = &total;
        unsigned long long rej = 0;
        int64_t now = wall_ms();
        long long lag;
        long long idle_s = d->last_input_ms ? (long long) ((now - d->last_input_ms) / 1000) : -1LL;
        long long behind_s = d->newest_ts != FH_TIME_NONE ? (long long) ((now - d->newest_ts) / 1000) : -1LL;
        char reasons[512] = "";
        size_t off = 0;

        fhd_shards_quiesce(d);
        lag = consumer_lag(d);
        fhd_stats_total(d, &total);
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

void fhd_on_stats(uv_timer_t *h) {
        fhd_log_stats(h->data);
}
