/* How long the daemon's loop stops answering while it checkpoints and
 * reloads a large registry: the watchdog is pinged from that loop, so a
 * stall longer than WatchdogSec gets the daemon killed.
 *
 *   bench_stall --rules DIR --workdir DIR [--stations N] [--hours H]
 *               [--step-min M] [--checkpoints K] [--interval S]
 *
 * A synthetic registry of N stations (100,000) gets H hours (12) of
 * readings every M minutes (5) through the engine directly; its state is
 * saved as the daemon's state file. Then the real daemon (fh_daemon_new on
 * a libuv loop, librdkafka's mock cluster as Kafka, clock: event so that no
 * wall-time ticks run) restores it and runs, while a 1-ms probe timer on
 * the same loop records the longest gap between two of its ticks: during
 * K checkpoints (every S seconds, default 3), during one reload, and during
 * two rebalances with a state topic (a second member joins the group, the
 * daemon hands over all its partitions and takes half back; the member
 * leaves, the daemon hands over its half and takes all back). The state
 * file maps every sensor to a partition of its kind's topic (4 each), so
 * that each partition has state to hand over. For
 * reference, the same work done synchronously (what the loop used to do)
 * is timed on its own first. Figures go to stdout as "name value" lines
 * for bench/run.sh. */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <stdatomic.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "fenghuo/buf.h"
#include "fenghuo/engine.h"
#include "fenghuo/load.h"
#include "fenghuo/reading.h"
#include "fenghuo/simulate.h"
#include "fenghuo/timeutil.h"
#include "config.h"
#include "daemon.h"
#include "state.h"

static double now_s(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double) ts.tv_sec + (double) ts.tv_nsec * 1e-9;
}

static long status_kib(const char *key) {
        char line[256];
        long v = -1;
        FILE *f = fopen("/proc/self/status", "re");
        size_t kl = strlen(key);
        while (f && fgets(line, sizeof(line), f))
                if (!strncmp(line, key, kl) && line[kl] == ':')
                        v = strtol(line + kl + 1, NULL, 10);
        if (f)
                fclose(f);
        return v;
}

typedef struct feed {
        fh_engine *e;
        unsigned long long n, rejected;
} feed;

static int feed_line(void *userdata, const char *line, size_t len) {
        feed *f = userdata;
        fh_reading rd;
        char why[128];

        if (fh_reading_parse(line, len, &rd, why, sizeof(why)) != FH_REJECT_NONE) {
                f->rejected++;
                return 0;
        }
        fh_engine_ingest(f->e, &rd);
        f->n++;
        return 0;
}

enum { PH_WARMUP, PH_CHECKPOINT, PH_RELOAD, PH_REBALANCE, PH_DONE };

#define PARTS 4

/* The second member of the group, on a thread of its own: joining and
 * leaving block, and must not stall the loop being measured. */
typedef struct member {
        pthread_t thread;
        char brokers[256];
        atomic_bool leave;
        atomic_bool done;
        atomic_int assigned;
} member;

static void *member_run(void *userdata) {
        member *m = userdata;
        char err[512];
        rd_kafka_conf_t *conf = rd_kafka_conf_new();

        rd_kafka_conf_set(conf, "bootstrap.servers", m->brokers, err, sizeof(err));
        rd_kafka_conf_set(conf, "group.id", "bench-stall", err, sizeof(err));
        rd_kafka_conf_set(conf, "enable.auto.commit", "false", err, sizeof(err));
        rd_kafka_conf_set(conf, "log_level", "3", err, sizeof(err));
        rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err));
        if (!rk) {
                fprintf(stderr, "bench_stall: member: %s\n", err);
                atomic_store(&m->done, true);
                return NULL;
        }
        rd_kafka_poll_set_consumer(rk);
        rd_kafka_topic_partition_list_t *topics = rd_kafka_topic_partition_list_new(FH_KIND__MAX);
        for (int k = 0; k < FH_KIND__MAX; k++) {
                char topic[64];
                snprintf(topic, sizeof(topic), "bench.%s", fh_kind_name((fh_kind) k));
                rd_kafka_topic_partition_list_add(topics, topic, RD_KAFKA_PARTITION_UA);
        }
        rd_kafka_subscribe(rk, topics);
        rd_kafka_topic_partition_list_destroy(topics);
        while (!atomic_load(&m->leave)) {
                rd_kafka_message_t *msg = rd_kafka_consumer_poll(rk, 50);
                if (msg)
                        rd_kafka_message_destroy(msg);
                rd_kafka_topic_partition_list_t *a = NULL;
                if (rd_kafka_assignment(rk, &a) == RD_KAFKA_RESP_ERR_NO_ERROR) {
                        atomic_store(&m->assigned, a->cnt);
                        rd_kafka_topic_partition_list_destroy(a);
                }
        }
        rd_kafka_consumer_close(rk);
        rd_kafka_destroy(rk);
        atomic_store(&m->done, true);
        return NULL;
}

typedef struct bench {
        uv_loop_t loop;
        uv_timer_t probe, control;
        fh_daemon *d;
        int phase;
        double phase_t0, last_tick, max_gap[PH_DONE + 1];
        double last_cpu, max_busy[PH_DONE + 1];
        unsigned long long ticks[PH_DONE + 1];
        char state_path[600];
        struct timespec last_mtime;
        int checkpoints, want_checkpoints;
        double checkpoint_first_t, checkpoint_last_t;
        const fh_engine *old_engine;
        double reload_t0, reload_done_t;
        member member;
        int rebalance_step;
        double rebalance_t0, rebalance_join_t, rebalance_leave_t, rebalance_back_t;
        bool stopped;
} bench;

static double thread_cpu_s(void) {
        struct timespec ts;
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
        return (double) ts.tv_sec + (double) ts.tv_nsec * 1e-9;
}

/* Besides the gap, the loop thread's own CPU time within it: a long gap
 * with little CPU is the machine starving the loop, not the loop busy. */
static void on_probe(uv_timer_t *h) {
        bench *b = h->data;
        double t = now_s(), c = thread_cpu_s();
        if (b->last_tick > 0 && t - b->last_tick > b->max_gap[b->phase])
                b->max_gap[b->phase] = t - b->last_tick;
        if (b->last_cpu > 0 && c - b->last_cpu > b->max_busy[b->phase])
                b->max_busy[b->phase] = c - b->last_cpu;
        b->ticks[b->phase]++;
        b->last_tick = t;
        b->last_cpu = c;
}

static void next_phase(bench *b, int phase) {
        b->phase = phase;
        b->phase_t0 = now_s();
}

static void on_control(uv_timer_t *h) {
        bench *b = h->data;
        double t = now_s();
        struct stat st;

        switch (b->phase) {
        case PH_WARMUP:
                if (t - b->phase_t0 >= 3) {
                        if (stat(b->state_path, &st) == 0)
                                b->last_mtime = st.st_mtim;
                        next_phase(b, PH_CHECKPOINT);
                }
                break;
        case PH_CHECKPOINT:
                if (stat(b->state_path, &st) == 0 && (st.st_mtim.tv_sec != b->last_mtime.tv_sec ||
                                                      st.st_mtim.tv_nsec != b->last_mtime.tv_nsec)) {
                        b->last_mtime = st.st_mtim;
                        if (b->checkpoints++ == 0)
                                b->checkpoint_first_t = t;
                        b->checkpoint_last_t = t;
                }
                if (b->checkpoints >= b->want_checkpoints || t - b->phase_t0 > 300) {
                        next_phase(b, PH_RELOAD);
                        b->old_engine = fh_daemon_engine(b->d);
                        b->reload_t0 = t;
                        fh_daemon_reload(b->d);
                }
                break;
        case PH_RELOAD:
                if (b->reload_done_t == 0 && fh_daemon_engine(b->d) != b->old_engine)
                        b->reload_done_t = t;
                /* Half a second past the swap: the old engine's free is
                 * part of the reload too. */
                if ((b->reload_done_t > 0 && t - b->reload_done_t > 0.5) || t - b->phase_t0 > 300) {
                        next_phase(b, PH_REBALANCE);
                        b->rebalance_t0 = t;
                        pthread_create(&b->member.thread, NULL, member_run, &b->member);
                }
                break;
        case PH_REBALANCE: {
                int mine = fh_daemon_assigned(b->d);
                if (b->rebalance_step == 0 && atomic_load(&b->member.assigned) > 0 && mine > 0) {
                        /* Both members have their share: the second leaves. */
                        b->rebalance_join_t = t;
                        b->rebalance_step = 1;
                        atomic_store(&b->member.leave, true);
                } else if (b->rebalance_step == 1 && atomic_load(&b->member.done)) {
                        b->rebalance_leave_t = t;
                        b->rebalance_step = 2;
                } else if (b->rebalance_step == 2 && mine == FH_KIND__MAX * PARTS) {
                        b->rebalance_back_t = t;
                        b->rebalance_step = 3;
                } else if ((b->rebalance_step == 3 && t - b->rebalance_back_t > 0.5) || t - b->phase_t0 > 600) {
                        atomic_store(&b->member.leave, true);
                        next_phase(b, PH_DONE);
                        fh_daemon_stop(b->d);
                }
                break;
        }
        default:
                break;
        }
}

static void on_stopped(void *userdata, int code) {
        bench *b = userdata;
        (void) code;
        b->stopped = true;
        uv_close((uv_handle_t *) &b->probe, NULL);
        uv_close((uv_handle_t *) &b->control, NULL);
}

static void usage(void) {
        fprintf(stderr, "usage: bench_stall --rules DIR --workdir DIR [--stations N] [--hours H] [--step-min M] "
                        "[--checkpoints K] [--interval S]\n");
        exit(2);
}

int main(int argc, char **argv) {
        const char *rules = NULL, *workdir = NULL;
        size_t n = 100000;
        int hours = 12, step_min = 5, interval = 3;
        bench b = { .want_checkpoints = 3 };
        static const struct option opts[] = {
                { "rules", required_argument, NULL, 'r' },       { "workdir", required_argument, NULL, 'w' },
                { "stations", required_argument, NULL, 'n' },    { "hours", required_argument, NULL, 'H' },
                { "step-min", required_argument, NULL, 's' },    { "checkpoints", required_argument, NULL, 'k' },
                { "interval", required_argument, NULL, 'i' },    { NULL, 0, NULL, 0 },
        };
        for (int c; (c = getopt_long(argc, argv, "", opts, NULL)) != -1;)
                switch (c) {
                case 'r': rules = optarg; break;
                case 'w': workdir = optarg; break;
                case 'n': n = strtoul(optarg, NULL, 10); break;
                case 'H': hours = atoi(optarg); break;
                case 's': step_min = atoi(optarg); break;
                case 'k': b.want_checkpoints = atoi(optarg); break;
                case 'i': interval = atoi(optarg); break;
                default: usage();
                }
        if (!rules || !workdir || n == 0 || hours <= 0 || step_min <= 0 || interval <= 0)
                usage();

        char stations[600], state_dir[500], config[600];
        snprintf(stations, sizeof(stations), "%s/stations.csv", workdir);
        snprintf(state_dir, sizeof(state_dir), "%s/state", workdir);
        snprintf(config, sizeof(config), "%s/stall.yaml", workdir);
        snprintf(b.state_path, sizeof(b.state_path), "%s/state", state_dir);
        mkdir(state_dir, 0700);

        char *csv;
        size_t csv_len;
        fh_simulate_registry(n, 1, &csv, &csv_len);
        FILE *f = fopen(stations, "we");
        if (!f || fwrite(csv, 1, csv_len, f) != csv_len || fclose(f) != 0) {
                fprintf(stderr, "bench_stall: cannot write %s\n", stations);
                return 1;
        }
        free(csv);

        /* The state: readings straight into an engine, saved as the
         * daemon's state file. */
        fh_engine_config ecfg = FH_ENGINE_CONFIG_DEFAULT;
        fh_diags diags = FH_DIAGS_NULL;
        fh_engine *e = NULL;
        if (fh_load_engine(rules, stations, &ecfg, &e, &diags) < 0) {
                fh_print_diags(&diags);
                return 1;
        }
        fh_diags_clear(&diags);
        fh_sim_options so = { .seed = 1, .duration_ms = (int64_t) hours * 3600000, .step_ms = (int64_t) step_min * 60000,
                              .tz_offset_min = 480, .storm_scale = 1.0 };
        fh_time_parse_rfc3339("2023-07-29T00:00:00+08:00", 25, &so.start_ms, NULL);
        feed fd = { e, 0, 0 };
        double t0 = now_s();
        fh_simulate(fh_engine_registry(e), &so, feed_line, &fd);
        printf("stations %zu\nreadings %llu\nfill_s %.1f\n", n, fd.n, now_s() - t0);
        fflush(stdout);

        /* What the loop used to do: the whole checkpoint, and the whole
         * reload (load, snapshot, restore), synchronously. */
        fh_checkpoint cp = { 0 };
        const fh_registry *reg = fh_engine_registry(e);
        for (int k = 0; k < FH_KIND__MAX; k++)
                for (int p = 0; p < PARTS; p++) {
                        char topic[64];
                        snprintf(topic, sizeof(topic), "bench.%s", fh_kind_name((fh_kind) k));
                        fh_offsets_add(&cp.partitions, topic, p, k * PARTS + p + 1);
                        fh_offsets_add(&cp.positions, topic, p, 0);
                }
        cp.sensor_ids = calloc(reg->n_stations + 1, sizeof(*cp.sensor_ids));
        cp.sensor_part = calloc(reg->n_stations + 1, sizeof(*cp.sensor_part));
        for (size_t i = 0; i < reg->n_stations; i++) {
                cp.sensor_ids[i] = strdup(reg->stations[i].id);
                cp.sensor_part[i] = (uint32_t) (reg->stations[i].kind * PARTS + (int) (i % PARTS));
        }
        cp.n_sensors = reg->n_stations;
        t0 = now_s();
        if (fh_state_save(state_dir, (const fh_engine *[]) { e }, 1, &cp) < 0) {
                fprintf(stderr, "bench_stall: cannot save %s\n", b.state_path);
                return 1;
        }
        printf("sync.checkpoint_s %.3f\n", now_s() - t0);
        fh_checkpoint_clear(&cp);
        struct stat st;
        stat(b.state_path, &st);
        printf("state_bytes %lld\n", (long long) st.st_size);
        t0 = now_s();
        fh_engine *ne = NULL;
        fh_buf snap = FH_BUF_NULL;
        if (fh_load_engine(rules, stations, &ecfg, &ne, &diags) < 0)
                return 1;
        double t1 = now_s();
        fh_engine_snapshot(e, NULL, NULL, &snap);
        double t2 = now_s();
        if (fh_engine_restore(ne, snap.data, snap.len) < 0)
                return 1;
        double t3 = now_s();
        printf("sync.reload_s %.3f\nsync.reload_load_s %.3f\nsync.reload_snapshot_s %.3f\nsync.reload_restore_s %.3f\n",
               t3 - t0, t1 - t0, t2 - t1, t3 - t2);
        fh_buf_free(&snap);
        fh_engine_free(ne);
        fh_engine_free(e);
        fflush(stdout);

        /* The daemon, on librdkafka's mock cluster. */
        char err[512];
        rd_kafka_conf_t *conf = rd_kafka_conf_new();
        rd_kafka_conf_set(conf, "test.mock.num.brokers", "1", err, sizeof(err));
        rd_kafka_conf_set(conf, "log_level", "3", err, sizeof(err));
        rd_kafka_t *mock = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
        if (!mock) {
                fprintf(stderr, "bench_stall: no mock cluster: %s\n", err);
                return 1;
        }
        rd_kafka_mock_cluster_t *mc = rd_kafka_handle_mock_cluster(mock);
        f = fopen(config, "we");
        if (!f)
                return 1;
        fprintf(f, "rules: \"%s\"\nstations: \"%s\"\nstate_dir: \"%s\"\nclock: event\nstats_interval: 0s\n"
                   "checkpoint_interval: %ds\nshutdown_timeout: 5s\nlog_level: notice\n"
                   "kafka:\n  brokers: \"%s\"\n  group_id: bench-stall\n  alerts_topic: bench.alerts\n  state_topic: bench.state\n  topics:\n",
                rules, stations, state_dir, interval, rd_kafka_mock_cluster_bootstraps(mc));
        snprintf(b.member.brokers, sizeof(b.member.brokers), "%s", rd_kafka_mock_cluster_bootstraps(mc));
        /* The mock keeps a bounded log per partition: spread the chunks. */
        rd_kafka_mock_topic_create(mc, "bench.state", 32, 1);
        for (int k = 0; k < FH_KIND__MAX; k++) {
                char topic[64];
                snprintf(topic, sizeof(topic), "bench.%s", fh_kind_name((fh_kind) k));
                rd_kafka_mock_topic_create(mc, topic, PARTS, 1);
                fprintf(f, "    %s: %s\n", fh_kind_name((fh_kind) k), topic);
        }
        rd_kafka_mock_topic_create(mc, "bench.alerts", 4, 1);
        fprintf(f, "  properties:\n    log_level: \"3\"\n  consumer_properties:\n    session.timeout.ms: \"6000\"\n");
        fclose(f);
        fh_daemon_config cfg;
        if (fh_daemon_config_load(config, &cfg, &diags) < 0) {
                fh_print_diags(&diags);
                return 1;
        }

        uv_loop_init(&b.loop);
        fh_daemon_hooks hooks = { .on_stopped = on_stopped, .userdata = &b };
        t0 = now_s();
        if (fh_daemon_new(&b.d, &b.loop, &cfg, &hooks) < 0)
                return 1;
        printf("daemon_start_s %.3f\n", now_s() - t0);
        uv_timer_init(&b.loop, &b.probe);
        uv_timer_init(&b.loop, &b.control);
        b.probe.data = b.control.data = &b;
        next_phase(&b, PH_WARMUP);
        uv_timer_start(&b.probe, on_probe, 1, 1);
        uv_timer_start(&b.control, on_control, 50, 50);
        uv_run(&b.loop, UV_RUN_DEFAULT);
        fh_daemon_free(b.d);
        uv_run(&b.loop, UV_RUN_NOWAIT);
        if (b.rebalance_t0 > 0)
                pthread_join(b.member.thread, NULL);
        uv_loop_close(&b.loop);
        rd_kafka_destroy(mock);

        printf("checkpoint.count %d\n", b.checkpoints);
        printf("checkpoint.seconds %.1f\n", b.checkpoint_last_t - (b.checkpoint_first_t - interval));
        printf("checkpoint.max_stall_ms %.1f\n", b.max_gap[PH_CHECKPOINT] * 1000);
        printf("checkpoint.max_busy_ms %.1f\n", b.max_busy[PH_CHECKPOINT] * 1000);
        printf("checkpoint.probe_ticks %llu\n", b.ticks[PH_CHECKPOINT]);
        printf("reload.s %.3f\n", b.reload_done_t > 0 ? b.reload_done_t - b.reload_t0 : -1.0);
        printf("reload.max_stall_ms %.1f\n", b.max_gap[PH_RELOAD] * 1000);
        printf("reload.max_busy_ms %.1f\n", b.max_busy[PH_RELOAD] * 1000);
        printf("rebalance.join_s %.3f\n", b.rebalance_join_t > 0 ? b.rebalance_join_t - b.rebalance_t0 : -1.0);
        printf("rebalance.leave_s %.3f\n",
               b.rebalance_back_t > 0 ? b.rebalance_back_t - b.rebalance_join_t : -1.0);
        printf("rebalance.max_stall_ms %.1f\n", b.max_gap[PH_REBALANCE] * 1000);
        printf("rebalance.max_busy_ms %.1f\n", b.max_busy[PH_REBALANCE] * 1000);
        printf("warmup.max_stall_ms %.1f\n", b.max_gap[PH_WARMUP] * 1000);
        printf("peak_rss_kib %ld\n", status_kib("VmHWM"));
        return 0;
}
