/* `fenghuo demo`: the real daemon pipeline on an in-process Kafka
 * (librdkafka's mock cluster), fed a simulated storm over the Miyun
 * registry at an accelerated pace, with each alert shown as it happens.
 * Needs nothing installed; uses Redis only when told where it is. */
#include <errno.h>
#include <getopt.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fenghuo/buf.h"
#include "fenghuo/reading.h"
#include "fenghuo/simulate.h"
#include "fenghuo/timeutil.h"
#include "../cli/cli.h"
#include "daemon.h"
#include "log.h"

typedef struct line {
        char *text;
        size_t len;
        int64_t ts;        /* FH_TIME_NONE for bad lines: sent with the previous step */
        int kind;          /* topic; bad lines go to the rain topic */
        char key[FH_SENSOR_ID_MAX + 1];
} line;

typedef struct demo {
        uv_loop_t loop;
        fh_daemon *daemon;
        rd_kafka_t *rk;          /* the feeding producer; hosts the mock cluster */
        const fh_registry *reg;
        line *lines;
        size_t n_lines, cap_lines, next;
        size_t produced;
        int64_t step_ms;
        int64_t sim_now;
        uint64_t seed;
        uint64_t pace_ms;
        uv_timer_t pace;
        uv_signal_t sigint, sigterm;
        bool color;
        bool json;               /* alerts as JSON Lines on stdout, the rest on stderr */
        FILE *out;               /* where the header, progress and summary go */
        bool stopping;
        bool feeding_done;
        uint64_t drain_deadline;
        uint64_t wait_since;     /* when the daemon last fell behind the feed */
        int exit_code;
        size_t by_event[FH_EVENT__MAX];
        size_t by_level[FH_LEVEL__MAX];
        size_t active;
        char topics[FH_KIND__MAX][32];
} demo;

/* Each eight terminal columns wide (a CJK character takes two), so the
 * columns after the badge line up. */
static const char *const level_badge[FH_LEVEL__MAX] = { "解除    ", "蓝色 IV ", "黄色 III", "橙色 II ", "红色 I  " };
static const char *const level_color[FH_LEVEL__MAX] = { "\033[30;42m", "\033[97;44m", "\033[30;43m",
                                                        "\033[30;48;5;208m", "\033[97;41m" };
static const char *const event_arrow[FH_EVENT__MAX] = { "▲ raised     ", "▲ escalated  ", "▼ deescalated",
                                                        "✓ cleared    " };

static int collect(void *userdata, const char *text, size_t len) {
        demo *dm = userdata;
        fh_reading r;
        line *l;

        if (dm->n_lines == dm->cap_lines) {
                dm->cap_lines = dm->cap_lines ? dm->cap_lines * 2 : 4096;
                dm->lines = fh_realloc(dm->lines, dm->cap_lines * sizeof(*dm->lines));
        }
        l = &dm->lines[dm->n_lines++];
        *l = (line) { .text = fh_strndup(text, len), .len = len, .ts = FH_TIME_NONE, .kind = FH_KIND_RAIN };
        if (fh_reading_parse(text, len, &r, NULL, 0) == FH_REJECT_NONE) {
                const fh_station *st = fh_registry_find(dm->reg, r.sensor, r.sensor_len);
                l->ts = r.ts_ms;
                if (st)
                        l->kind = st->kind;
                memcpy(l->key, r.sensor, r.sensor_len + 1u);
        }
        return 0;
}

static void show_alert(void *userdata, const fh_alert *a, const char *json, size_t len) {
        demo *dm = userdata;
        char ts[FH_TIME_LOCAL_MAX], value[64] = "";

        dm->by_event[a->event]++;
        dm->by_level[a->level]++;
        if (a->event == FH_EVENT_RAISED)
                dm->active++;
        else if (a->event == FH_EVENT_CLEARED)
                dm->active--;
        if (dm->json) {
                /* The same lines `replay` prints, so the two can be compared. */
                fwrite(json, 1, len, stdout);
                fputc('\n', stdout);
                fflush(stdout);
                return;
        }
        fh_time_format_local(a->ts_ms, 480, ts);
        if (isfinite(a->value))
                snprintf(value, sizeof(value), "%8.1f %s", a->value, a->rule->unit ? a->rule->unit : "");
        else
                snprintf(value, sizeof(value), "%8s ", "-");
        /* The unit (rules/fields.yaml) in a column of five terminal
         * columns: one per UTF-8 character, none of them wide. */
        size_t cols = 0, n = strlen(value);
        for (size_t i = 0; i < n; i++)
                cols += ((unsigned char) value[i] & 0xC0) != 0x80;
        while (cols++ < 8 + 1 + 5 && n + 1 < sizeof(value))
                value[n++] = ' ', value[n] = 0;
        printf("%s  %s %s %s  %s  %-11s %s  %s · %s\n", ts + 5,
               dm->color ? level_color[a->level] : "[", level_badge[a->level], dm->color ? "\033[0m" : "]",
               event_arrow[a->event], a->station->id, value,
               a->rule->title ? a->rule->title : a->rule->id, a->station->name);
        fflush(stdout);
}

static void summary(demo *dm) {
        const fh_engine *e = fh_daemon_engine(dm->daemon);
        const fh_engine_stats *s = fh_engine_stats_get(e);
        size_t total = 0;

        for (int i = 0; i < FH_EVENT__MAX; i++)
                total += dm->by_event[i];
        fprintf(dm->out, "\n%s── summary ──%s\n", dm->color ? "\033[1m" : "", dm->color ? "\033[0m" : "");
        fprintf(dm->out, "readings: %zu produced, %llu consumed, %llu accepted, %llu to the dead-letter topic, "
               "%llu duplicates, %llu late\n",
               dm->produced, (unsigned long long) fh_daemon_consumed(dm->daemon),
               (unsigned long long) s->accepted, (unsigned long long) fh_daemon_dead_letters(dm->daemon),
               (unsigned long long) s->duplicates, (unsigned long long) s->late);
        fprintf(dm->out, "alerts: %zu (%zu raised, %zu escalated, %zu deescalated, %zu cleared); "
               "levels reached: red %zu, orange %zu, yellow %zu, blue %zu\n",
               total, dm->by_event[FH_EVENT_RAISED], dm->by_event[FH_EVENT_ESCALATED],
               dm->by_event[FH_EVENT_DEESCALATED], dm->by_event[FH_EVENT_CLEARED],
               dm->by_level[FH_LEVEL_RED], dm->by_level[FH_LEVEL_ORANGE], dm->by_level[FH_LEVEL_YELLOW],
               dm->by_level[FH_LEVEL_BLUE]);
        fprintf(dm->out, "still active: %zu\n", dm->active);
        fprintf(dm->out, "Every alert also went to the Kafka topic fenghuo.alerts of the embedded cluster.\n"
               "The same alerts, from the command line:\n"
               "  fenghuo simulate --stations stations/miyun.csv --bad 0.003 --seed %llu | "
               "fenghuo replay --rules rules --stations stations/miyun.csv\n", (unsigned long long) dm->seed);
}

static void on_daemon_stopped(void *userdata, int code) {
        demo *dm = userdata;

        summary(dm);
        if (code)
                dm->exit_code = code;
        uv_timer_stop(&dm->pace);
        uv_close((uv_handle_t *) &dm->pace, NULL);
        uv_close((uv_handle_t *) &dm->sigint, NULL);
        uv_close((uv_handle_t *) &dm->sigterm, NULL);
}

static void stop(demo *dm) {
        if (dm->stopping)
                return;
        dm->stopping = true;
        fh_daemon_stop(dm->daemon);
}

static void on_pace(uv_timer_t *h) {
        demo *dm = h->data;

        rd_kafka_poll(dm->rk, 0);
        if (dm->stopping)
                return;
        if (dm->next >= dm->n_lines) {
                if (!dm->feeding_done) {
                        dm->feeding_done = true;
                        dm->drain_deadline = uv_now(&dm->loop) + 15000;
                        rd_kafka_flush(dm->rk, 5000);
                }
                /* Done when the daemon has taken in everything we sent. */
                if (fh_daemon_consumed(dm->daemon) >= dm->produced || uv_now(&dm->loop) > dm->drain_deadline)
                        stop(dm);
                return;
        }
        /* Lockstep: the next step only once the daemon has taken in every
         * reading sent so far. The daemon's event clock is the newest
         * timestamp of any partition, and the 16 input partitions are
         * fetched independently: a step sent early lets one partition run
         * ahead, the clock jumps, and age() ticks judge the sensors of a
         * partition that lags behind silent (false alerts, cleared at an
         * earlier time than raised when their readings arrive). With every
         * reading of one timestamp in before any of the next, the daemon
         * sees readings and tick boundaries in the order `replay` does, and
         * raises exactly its alerts; on a slow machine the demo slows down
         * instead. */
        if (fh_daemon_consumed(dm->daemon) < dm->produced) {
                if (!dm->wait_since)
                        dm->wait_since = uv_now(&dm->loop);
                else if (uv_now(&dm->loop) - dm->wait_since > 60000) {
                        fprintf(stderr, "fenghuo demo: the daemon took in %llu of %zu readings in a minute; stopping\n",
                                (unsigned long long) fh_daemon_consumed(dm->daemon), dm->produced);
                        dm->exit_code = 1;
                        stop(dm);
                }
                return;
        }
        dm->wait_since = 0;
        /* One simulated step per tick: all readings stamped at or before
         * sim_now, with the bad lines that sit among them. */
        dm->sim_now += dm->step_ms;
        while (dm->next < dm->n_lines && (dm->lines[dm->next].ts == FH_TIME_NONE || dm->lines[dm->next].ts <= dm->sim_now)) {
                line *l = &dm->lines[dm->next++];
                rd_kafka_resp_err_t err;
                do {
                        err = rd_kafka_producev(dm->rk, RD_KAFKA_V_TOPIC(dm->topics[l->kind]),
                                                RD_KAFKA_V_KEY(l->key, strlen(l->key)),
                                                RD_KAFKA_V_VALUE(l->text, l->len),
                                                RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
                        if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL)
                                rd_kafka_poll(dm->rk, 10);
                } while (err == RD_KAFKA_RESP_ERR__QUEUE_FULL);
                dm->produced++;
        }
        if ((dm->sim_now / dm->step_ms) % 36 == 0) {
                char ts[FH_TIME_LOCAL_MAX];
                fh_time_format_local(dm->sim_now, 480, ts);
                fprintf(dm->out, "%s── %s · %zu readings sent · %zu alerts active ──%s\n", dm->color ? "\033[2m" : "",
                        ts, dm->produced, dm->active, dm->color ? "\033[0m" : "");
                fflush(dm->out);
        }
}

static void on_signal(uv_signal_t *h, int signum) {
        demo *dm = h->data;
        (void) signum;
        fprintf(dm->out, "\n(stopping)\n");
        stop(dm);
}

static bool exists(const char *p) {
        return access(p, R_OK) == 0;
}

/* The demo runs from the source tree (./dev demo) or an install: look for
 * the bundled rules and registry where each would put them. */
static void find_data(char *rules, char *stations, size_t n) {
        char exe[PATH_MAX];
        ssize_t k = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
        const char *bases[3] = { ".", NULL, "/usr/share/fenghuo" };

        if (k > 0) {
                exe[k] = 0;
                char *slash = strrchr(exe, '/');
                if (slash)
                        strcpy(slash, "/..");
                bases[1] = exe;
        }
        for (int i = 0; i < 3; i++) {
                if (!bases[i])
                        continue;
                snprintf(rules, n, "%s/rules", bases[i]);
                snprintf(stations, n, "%s/stations/miyun.csv", bases[i]);
                if (exists(rules) && exists(stations))
                        return;
        }
        snprintf(rules, n, "rules");
        snprintf(stations, n, "stations/miyun.csv");
}

static void usage(FILE *f) {
        fputs("usage: fenghuo demo [--seconds N] [--seed N] [--redis HOST:PORT] [--rules DIR] [--stations FILE] [--json]\n"
              "A simulated storm over Miyun through the real daemon pipeline, on an embedded\n"
              "Kafka cluster; about two minutes, Ctrl-C stops early. --json prints the alerts\n"
              "as JSON Lines on stdout, as `replay` does, and everything else on stderr.\n", f);
}

int fh_cmd_demo(int argc, char **argv) {
        static const struct option opts[] = {
                { "seconds", required_argument, NULL, 's' },
                { "seed", required_argument, NULL, 'e' },
                { "redis", required_argument, NULL, 'r' },
                { "rules", required_argument, NULL, 'R' },
                { "stations", required_argument, NULL, 'S' },
                { "verbose", no_argument, NULL, 'v' },
                { "json", no_argument, NULL, 'j' },
                { "help", no_argument, NULL, 'h' },
                {}
        };
        char rules[PATH_MAX], stations[PATH_MAX], err[512];
        const char *redis = NULL;
        double seconds = 100;
        uint64_t seed = 7;
        bool verbose = false;
        demo dm = { 0 };
        fh_diags diags = FH_DIAGS_NULL;
        fh_registry *reg = NULL;
        int c;

        find_data(rules, stations, sizeof(rules));
        optind = 1;
        while ((c = getopt_long(argc, argv, "hv", opts, NULL)) != -1)
                switch (c) {
                case 's': seconds = strtod(optarg, NULL); break;
                case 'e': seed = strtoull(optarg, NULL, 10); break;
                case 'r': redis = optarg; break;
                case 'R': snprintf(rules, sizeof(rules), "%s", optarg); break;
                case 'S': snprintf(stations, sizeof(stations), "%s", optarg); break;
                case 'v': verbose = true; break;
                case 'j': dm.json = true; break;
                case 'h': usage(stdout); return 0;
                default: usage(stderr); return 2;
                }
        if (!(seconds >= 1 && seconds <= 3600)) {
                fputs("fenghuo demo: --seconds wants 1..3600\n", stderr);
                return 2;
        }
        fh_log_init(verbose ? LOG_INFO : LOG_WARNING);
        signal(SIGPIPE, SIG_IGN);
        dm.out = dm.json ? stderr : stdout;
        dm.color = isatty(fileno(dm.out)) && !getenv("NO_COLOR");

        if (fh_load_registry(stations, &reg, &diags) < 0) {
                fh_print_diags(&diags);
                fh_diags_clear(&diags);
                return 1;
        }
        fh_diags_clear(&diags);
        dm.reg = reg;

        fh_sim_options so = {
                .seed = seed,
                .duration_ms = 2 * 86400000LL,
                .step_ms = 10 * 60000LL,
                .bad_share = 0.003,
                .tz_offset_min = 480,
                .storm_scale = 1.0,
        };
        fh_time_parse_rfc3339("2023-07-29T00:00:00+08:00", 25, &so.start_ms, NULL);
        dm.seed = seed;
        fh_simulate(reg, &so, collect, &dm);
        dm.step_ms = so.step_ms;
        dm.sim_now = so.start_ms - so.step_ms;
        dm.pace_ms = (uint64_t) (seconds * 1000.0 / (double) (so.duration_ms / so.step_ms));
        if (dm.pace_ms == 0)
                dm.pace_ms = 1;

        /* The embedded Kafka: a mock cluster hosted by the feeding producer. */
        rd_kafka_conf_t *conf = rd_kafka_conf_new();
        rd_kafka_conf_set(conf, "test.mock.num.brokers", "1", err, sizeof(err));
        rd_kafka_conf_set(conf, "linger.ms", "5", err, sizeof(err));
        rd_kafka_conf_set(conf, "log_level", "3", err, sizeof(err));
        dm.rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
        if (!dm.rk) {
                fprintf(stderr, "fenghuo demo: failed to start the embedded Kafka: %s\n", err);
                fh_registry_free(reg);
                return 1;
        }
        rd_kafka_mock_cluster_t *mc = rd_kafka_handle_mock_cluster(dm.rk);
        const char *bootstraps = rd_kafka_mock_cluster_bootstraps(mc);
        for (int k = 0; k < FH_KIND__MAX; k++) {
                snprintf(dm.topics[k], sizeof(dm.topics[k]), "miyun.%s", fh_kind_name((fh_kind) k));
                rd_kafka_mock_topic_create(mc, dm.topics[k], 4, 1);
        }
        rd_kafka_mock_topic_create(mc, "fenghuo.alerts", 4, 1);
        rd_kafka_mock_topic_create(mc, "fenghuo.deadletter", 1, 1);

        fh_daemon_config cfg;
        memset(&cfg, 0, sizeof(cfg));
        {
                /* The same defaults a config file starts from. */
                char tmpl[] = "/tmp/fenghuo-demo-XXXXXX";
                int fd = mkstemp(tmpl);
                FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
                if (!f) {
                        fprintf(stderr, "fenghuo demo: cannot write a temporary config: %m\n");
                        rd_kafka_destroy(dm.rk);
                        fh_registry_free(reg);
                        return 1;
                }
                fprintf(f, "rules: \"%s\"\nstations: \"%s\"\nclock: event\nstats_interval: 0s\ncheckpoint_interval: 0s\n"
                           "shutdown_timeout: 5s\nlog_level: %s\n"
                           "kafka:\n  brokers: \"%s\"\n  group_id: fenghuo-demo\n  alerts_topic: fenghuo.alerts\n"
                           "  dead_letter_topic: fenghuo.deadletter\n  topics:\n",
                        rules, stations, verbose ? "info" : "warning", bootstraps);
                for (int k = 0; k < FH_KIND__MAX; k++)
                        fprintf(f, "    %s: %s\n", fh_kind_name((fh_kind) k), dm.topics[k]);
                /* The broker answers a fetch at once when it has data, else after
                 * fetch.wait.max.ms: in lockstep (on_pace) that wait is paid
                 * at every step, so it is short. */
                fprintf(f, "  properties:\n    log_level: \"3\"\n  consumer_properties:\n    session.timeout.ms: \"6000\"\n"
                           "    fetch.wait.max.ms: \"5\"\n");
                if (redis) {
                        const char *colon = strrchr(redis, ':');
                        fprintf(f, "redis:\n  host: \"%.*s\"\n  port: %s\n", colon ? (int) (colon - redis) : (int) strlen(redis),
                                redis, colon ? colon + 1 : "6379");
                }
                fclose(f);
                int r = fh_daemon_config_load(tmpl, &cfg, &diags);
                unlink(tmpl);
                if (r < 0) {
                        fh_print_diags(&diags);
                        fh_diags_clear(&diags);
                        rd_kafka_destroy(dm.rk);
                        fh_registry_free(reg);
                        return 1;
                }
        }

        uv_loop_init(&dm.loop);
        fh_daemon_hooks hooks = { .on_alert = show_alert, .on_stopped = on_daemon_stopped, .userdata = &dm };
        const fh_ruleset *rs = NULL;
        if (fh_daemon_new(&dm.daemon, &dm.loop, &cfg, &hooks) < 0) {
                /* What the start left on the loop is closing: let it finish. */
                uv_run(&dm.loop, UV_RUN_DEFAULT);
                uv_loop_close(&dm.loop);
                rd_kafka_destroy(dm.rk);
                fh_registry_free(reg);
                return 1;
        }
        rs = fh_engine_rules(fh_daemon_engine(dm.daemon));

        fprintf(dm.out, "%s烽火 fenghuo — a simulated storm over Miyun%s\n", dm.color ? "\033[1m" : "",
                dm.color ? "\033[0m" : "");
        fprintf(dm.out, "%zu stations, %zu rules from %s; embedded Kafka (librdkafka mock cluster) at %s%s%s\n",
                reg->n_stations, rs->n_rules, rules, bootstraps, redis ? "; Redis at " : "", redis ? redis : "");
        fprintf(dm.out, "2023-07-29 00:00 → 2023-07-31 00:00, %zu readings (%.1f%% bad input), in about %.0f s. "
                "Ctrl-C stops.\n\n", dm.n_lines, so.bad_share * 100, seconds);
        fflush(dm.out);

        uv_timer_init(&dm.loop, &dm.pace);
        dm.pace.data = &dm;
        uv_timer_start(&dm.pace, on_pace, 3000, dm.pace_ms);   /* first, let the consumer join */
        uv_signal_init(&dm.loop, &dm.sigint);
        uv_signal_init(&dm.loop, &dm.sigterm);
        dm.sigint.data = dm.sigterm.data = &dm;
        uv_signal_start(&dm.sigint, on_signal, SIGINT);
        uv_signal_start(&dm.sigterm, on_signal, SIGTERM);

        uv_run(&dm.loop, UV_RUN_DEFAULT);
        fh_daemon_free(dm.daemon);
        uv_run(&dm.loop, UV_RUN_NOWAIT);
        uv_loop_close(&dm.loop);
        rd_kafka_destroy(dm.rk);
        for (size_t i = 0; i < dm.n_lines; i++)
                free(dm.lines[i].text);
        free(dm.lines);
        fh_registry_free(reg);
        return dm.exit_code;
}
