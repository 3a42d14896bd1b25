/* The daemon benchmark: `fenghuo run` against a real Kafka broker.
 *
 *   bench_daemon --brokers HOST:PORT --fenghuo PATH --rules DIR --stations FILE
 *                --workdir DIR [--readings N] [--variant NAME:PROPS]...
 *                [--daemon NAME:SHARDS[:FENGHUO]]... [--shards N|-]
 *                [--rate R] [--seconds S]
 *                [--latency-run NAME:LINGER:DAEMON_LINGER[:SHARDS[:FENGHUO]]]...
 *                [--skip-throughput] [--skip-latency]
 *
 * Throughput: N simulated readings (keyed by sensor, one topic of 4
 * partitions per station kind) are produced once. Then, for each variant (a
 * list of librdkafka consumer properties, "k=v,k=v", given to all), a plain
 * librdkafka consumer (this program's `drain` mode, a separate process),
 * then each --daemon in turn (a `shards:` setting, and optionally another
 * fenghuo binary: before/after in one run), then the plain consumer again,
 * each in a new consumer group, read them from the start. All are timed by
 * the same observer, from spawning the process until the group's committed
 * offsets cover every partition's end. A daemon that refuses its
 * configuration (`run --check`; one from before shards refuses the key) is
 * skipped and said so.
 *
 * Latency: the daemon runs on a fresh topic with a one-rule set that
 * alternates for a few dedicated rain gauges (0 mm, 200 mm, ...) while
 * readings are produced at a steady rate; 1 in 50 is such a flip, which
 * raises or clears an alert. An alert consumer in this process records when
 * each arrives; latency is that time minus the time the reading was handed
 * to the producer. A run is NAME:LINGER:DAEMON_LINGER: the readings'
 * producer linger.ms, and the daemon's producer linger.ms ("-" keeps the
 * daemon's own; "kafka" runs no daemon and times one Kafka hop instead: the
 * flip readings themselves, read back from the input topic).
 *
 * RULES should not contain age() rules: the daemon's clock is wall time,
 * and simulated readings are from 2023, so every sensor would look silent.
 * Figures go to stdout as "name value" lines; progress to stderr.
 *
 * Soak (--soak SECONDS, nothing else runs): the daemon, with stats_interval
 * 10s and a metrics file, reads four fresh topics while this program
 * produces the simulator's readings at a steady --rate, every station once
 * per round in id order, each timestamp replaced by the wall clock (so
 * age() rules and the daemon's future check see live data). Every 10 s it
 * samples the daemon's VmRSS and its metrics file (lag, behind, accepted,
 * alerts); after production it waits 25 s for the daemon to catch up.
 *
 *   bench_daemon drain --brokers B --group G --topics T1,T2,.. --count N [--props PROPS]
 * is the plain consumer. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <librdkafka/rdkafka.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "fenghuo/buf.h"
#include "fenghuo/load.h"
#include "fenghuo/registry.h"
#include "fenghuo/simulate.h"
#include "fenghuo/timeutil.h"

extern char **environ;

#define PARTITIONS 4
#define FLIP_EVERY 50
#define FLIP_GAUGES 200
#define WARM_MS 3000

static double mono_s(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double) ts.tv_sec + (double) ts.tv_nsec * 1e-9;
}

static int64_t wall_ms(void) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Processes started and not yet reaped, killed if we die first. */
static volatile pid_t live[2];

static void kill_live(void) {
        for (size_t i = 0; i < FH_ARRAY_SIZE(live); i++)
                if (live[i] > 0)
                        kill(live[i], SIGKILL);
}

static void on_fatal_signal(int sig) {
        kill_live();
        signal(sig, SIG_DFL);
        raise(sig);
}

__attribute__((format(printf, 1, 2), noreturn))
static void die(const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        fputs("bench_daemon: ", stderr);
        vfprintf(stderr, fmt, ap);
        fputc('\n', stderr);
        va_end(ap);
        kill_live();
        exit(1);
}

__attribute__((format(printf, 1, 2)))
static void note(const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        fputs("bench_daemon: ", stderr);
        vfprintf(stderr, fmt, ap);
        fputc('\n', stderr);
        va_end(ap);
}

static void set(rd_kafka_conf_t *c, const char *k, const char *v) {
        char err[512];
        if (rd_kafka_conf_set(c, k, v, err, sizeof(err)) != RD_KAFKA_CONF_OK)
                die("librdkafka property %s=%s: %s", k, v, err);
}

/* "k=v,k=v" onto a configuration. */
static void set_list(rd_kafka_conf_t *c, const char *props) {
        char *copy = fh_strdup(props), *save = NULL;
        for (char *kv = strtok_r(copy, ",", &save); kv; kv = strtok_r(NULL, ",", &save)) {
                char *eq = strchr(kv, '=');
                if (!eq)
                        die("property '%s' is not k=v", kv);
                *eq = 0;
                set(c, kv, eq + 1);
        }
        free(copy);
}

static rd_kafka_t *client(rd_kafka_type_t type, rd_kafka_conf_t *c) {
        char err[512];
        rd_kafka_t *rk = rd_kafka_new(type, c, err, sizeof(err));
        if (!rk)
                die("rd_kafka_new: %s", err);
        return rk;
}

/* ---- topics ---- */

static void create_topics(const char *brokers, char **names, size_t n) {
        rd_kafka_conf_t *c = rd_kafka_conf_new();
        set(c, "bootstrap.servers", brokers);
        rd_kafka_t *rk = client(RD_KAFKA_PRODUCER, c);
        rd_kafka_NewTopic_t **nt = fh_calloc(n, sizeof(*nt));
        char err[512];

        for (size_t i = 0; i < n; i++) {
                nt[i] = rd_kafka_NewTopic_new(names[i], PARTITIONS, 1, err, sizeof(err));
                if (!nt[i])
                        die("topic %s: %s", names[i], err);
        }
        rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
        rd_kafka_CreateTopics(rk, nt, n, NULL, q);
        rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 30000);
        if (!ev)
                die("CreateTopics timed out");
        const rd_kafka_CreateTopics_result_t *res = rd_kafka_event_CreateTopics_result(ev);
        size_t nres;
        const rd_kafka_topic_result_t **tr = rd_kafka_CreateTopics_result_topics(res, &nres);
        for (size_t i = 0; i < nres; i++)
                if (rd_kafka_topic_result_error(tr[i]))
                        die("creating topic %s: %s", rd_kafka_topic_result_name(tr[i]),
                            rd_kafka_topic_result_error_string(tr[i]));
        rd_kafka_event_destroy(ev);

        /* Wait until every partition has a leader, as kafka.sh does. */
        for (size_t i = 0; i < n; i++) {
                double deadline = mono_s() + 30;
                for (;;) {
                        rd_kafka_topic_t *t = rd_kafka_topic_new(rk, names[i], NULL);
                        const struct rd_kafka_metadata *md = NULL;
                        bool ok = false;
                        if (rd_kafka_metadata(rk, 0, t, &md, 5000) == RD_KAFKA_RESP_ERR_NO_ERROR) {
                                ok = md->topic_cnt == 1 && !md->topics[0].err &&
                                     md->topics[0].partition_cnt == PARTITIONS;
                                for (int p = 0; ok && p < md->topics[0].partition_cnt; p++)
                                        ok = md->topics[0].partitions[p].leader >= 0 &&
                                             !md->topics[0].partitions[p].err;
                                rd_kafka_metadata_destroy(md);
                        }
                        rd_kafka_topic_destroy(t);
                        if (ok)
                                break;
                        if (mono_s() > deadline)
                                die("topic %s has no leaders after 30 s", names[i]);
                        usleep(100000);
                }
        }
        for (size_t i = 0; i < n; i++)
                rd_kafka_NewTopic_destroy(nt[i]);
        free(nt);
        rd_kafka_queue_destroy(q);
        rd_kafka_destroy(rk);
}

static rd_kafka_topic_partition_list_t *all_partitions(char **topics, size_t n) {
        rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new((int) n * PARTITIONS);
        for (size_t i = 0; i < n; i++)
                for (int p = 0; p < PARTITIONS; p++)
                        rd_kafka_topic_partition_list_add(l, topics[i], p);
        return l;
}

/* Sum of the high watermarks (one client, any type). */
static int64_t end_offsets(rd_kafka_t *rk, rd_kafka_topic_partition_list_t *parts) {
        int64_t sum = 0;
        for (int i = 0; i < parts->cnt; i++) {
                int64_t lo, hi;
                rd_kafka_resp_err_t e = rd_kafka_query_watermark_offsets(rk, parts->elems[i].topic,
                                                                         parts->elems[i].partition, &lo, &hi, 10000);
                if (e)
                        die("watermarks of %s/%d: %s", parts->elems[i].topic, parts->elems[i].partition,
                            rd_kafka_err2str(e));
                parts->elems[i].offset = hi;
                sum += hi;
        }
        return sum;
}

/* ---- processes ---- */

typedef struct child {
        pid_t pid;
        int err_fd;            /* its stderr, read line by line */
        FILE *log;
        double t_spawn;
        char buf[8192];
        size_t len;
        /* From "stats consumed=N" lines of the daemon: the first that shows
         * progress and the last before everything was consumed, so the rate
         * between them leaves out start-up and the end. */
        long long total;
        double stats_t0, stats_t1;
        long long stats_c0, stats_c1;
        bool have_stats;
} child;

static void spawn(child *c, char *const argv[], const char *log_path) {
        int fds[2];
        posix_spawn_file_actions_t fa;

        memset(c, 0, sizeof(*c));
        if (pipe2(fds, O_CLOEXEC) < 0)
                die("pipe: %s", strerror(errno));
        c->log = fopen(log_path, "we");
        if (!c->log)
                die("cannot write %s: %s", log_path, strerror(errno));
        posix_spawn_file_actions_init(&fa);
        posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
        posix_spawn_file_actions_addopen(&fa, STDOUT_FILENO, log_path, O_WRONLY | O_APPEND, 0);
        posix_spawn_file_actions_adddup2(&fa, fds[1], STDERR_FILENO);
        c->t_spawn = mono_s();
        int r = posix_spawn(&c->pid, argv[0], &fa, NULL, argv, environ);
        posix_spawn_file_actions_destroy(&fa);
        if (r != 0)
                die("cannot run %s: %s", argv[0], strerror(r));
        close(fds[1]);
        c->err_fd = fds[0];
        for (size_t i = 0; i < FH_ARRAY_SIZE(live); i++)
                if (live[i] <= 0) {
                        live[i] = c->pid;
                        break;
                }
        fcntl(c->err_fd, F_SETFL, O_NONBLOCK);
}

static void child_line(child *c, const char *line, double t) {
        const char *p;

        fprintf(c->log, "[+%.3fs] %s\n", t - c->t_spawn, line);
        if ((p = strstr(line, "stats consumed=")) != NULL) {
                long long n = atoll(p + strlen("stats consumed="));
                if (n > 0 && !c->have_stats) {
                        c->have_stats = true;
                        c->stats_t0 = t;
                        c->stats_c0 = n;
                }
                if (n > 0 && n < c->total) {
                        c->stats_t1 = t;
                        c->stats_c1 = n;
                }
        }
}

/* Reads what the child wrote to stderr so far, stamping each line. */
static void child_pump(child *c) {
        for (;;) {
                ssize_t n = read(c->err_fd, c->buf + c->len, sizeof(c->buf) - 1 - c->len);
                if (n <= 0)
                        return;
                double t = mono_s();
                c->len += (size_t) n;
                c->buf[c->len] = 0;
                char *s = c->buf, *nl;
                while ((nl = strchr(s, '\n')) != NULL) {
                        *nl = 0;
                        child_line(c, s, t);
                        s = nl + 1;
                }
                c->len = strlen(s);
                memmove(c->buf, s, c->len);
                if (c->len == sizeof(c->buf) - 1) {
                        c->buf[c->len] = 0;
                        child_line(c, c->buf, t);
                        c->len = 0;
                }
        }
}

/* user+system CPU seconds of a live child. */
static double child_cpu_s(pid_t pid) {
        char path[64], buf[2048];
        snprintf(path, sizeof(path), "/proc/%d/stat", (int) pid);
        FILE *f = fopen(path, "re");
        if (!f)
                return NAN;
        size_t n = fread(buf, 1, sizeof(buf) - 1, f);
        fclose(f);
        buf[n] = 0;
        char *p = strrchr(buf, ')');
        unsigned long ut = 0, st = 0;
        /* After "pid (comm)": state is field 3, utime 14, stime 15. */
        if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
                return NAN;
        return (double) (ut + st) / (double) sysconf(_SC_CLK_TCK);
}

/* The whole machine's CPU time in seconds, busy and all, from the first
 * line of /proc/stat (idle and iowait are not busy). With the broker on
 * the same machine, busy/all over a run says whether the run had cores
 * left: the daemon's rate is bounded by what the broker and the rest of
 * the machine leave it. */
typedef struct machine_cpu {
        double busy, all;
} machine_cpu;

static machine_cpu machine_cpu_now(void) {
        machine_cpu m = { NAN, NAN };
        unsigned long long v[8] = { 0 };
        FILE *f = fopen("/proc/stat", "re");
        if (!f)
                return m;
        int n = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5],
                       &v[6], &v[7]);
        fclose(f);
        if (n < 5)
                return m;
        double tck = (double) sysconf(_SC_CLK_TCK), all = 0;
        for (int i = 0; i < 8; i++)
                all += (double) v[i];
        m.all = all / tck;
        m.busy = (all - (double) v[3] - (double) v[4]) / tck;
        return m;
}

/* "PREFIX.machine_busy_cores" (every process, other jobs' too),
 * "PREFIX.broker_cpu_s" and "PREFIX.cores" (the machine's CPUs) of a run
 * from M0/B0, taken at its start. */
static void print_machine(pid_t broker, const char *prefix, machine_cpu m0, double b0) {
        machine_cpu m1 = machine_cpu_now();
        long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
        double wall = (m1.all - m0.all) / (double) (ncpu > 0 ? ncpu : 1);
        if (wall > 0)
                printf("%s.machine_busy_cores %.2f\n", prefix, (m1.busy - m0.busy) / wall);
        printf("%s.cores %ld\n", prefix, ncpu);
        if (broker > 0)
                printf("%s.broker_cpu_s %.2f\n", prefix, child_cpu_s(broker) - b0);
}

typedef struct thread_cpu {
        char comm[32];
        double cpu_s;
} thread_cpu;

static int cmp_thread_cpu(const void *a, const void *b) {
        double x = ((const thread_cpu *) a)->cpu_s, y = ((const thread_cpu *) b)->cpu_s;
        return x > y ? -1 : x < y;
}

/* "PREFIX.threads comm=cpu_s,..." for the live child's busiest threads:
 * whether one thread (the loop, librdkafka's fetcher) bounds the process. */
static void print_threads(pid_t pid, const char *prefix) {
        char path[64], buf[2048];
        thread_cpu t[64];
        size_t n = 0;

        snprintf(path, sizeof(path), "/proc/%d/task", (int) pid);
        DIR *dir = opendir(path);
        struct dirent *de;
        while (dir && (de = readdir(dir)) != NULL && n < FH_ARRAY_SIZE(t)) {
                if (de->d_name[0] == '.')
                        continue;
                snprintf(buf, sizeof(buf), "/proc/%d/task/%s/stat", (int) pid, de->d_name);
                FILE *f = fopen(buf, "re");
                if (!f)
                        continue;
                size_t len = fread(buf, 1, sizeof(buf) - 1, f);
                fclose(f);
                buf[len] = 0;
                char *lp = strchr(buf, '('), *rp = strrchr(buf, ')');
                unsigned long ut = 0, st = 0;
                if (!lp || !rp || rp < lp ||
                    sscanf(rp + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
                        continue;
                snprintf(t[n].comm, sizeof(t[n].comm), "%.*s", (int) (rp - lp - 1), lp + 1);
                for (char *q = t[n].comm; *q; q++)
                        if (*q == ' ' || *q == ',' || *q == '=')
                                *q = '_';
                t[n++].cpu_s = (double) (ut + st) / (double) sysconf(_SC_CLK_TCK);
        }
        if (dir)
                closedir(dir);
        qsort(t, n, sizeof(*t), cmp_thread_cpu);
        printf("%s.threads ", prefix);
        for (size_t i = 0; i < n && i < 6 && t[i].cpu_s > 0; i++)
                printf("%s%s=%.2f", i ? "," : "", t[i].comm, t[i].cpu_s);
        printf("\n");
}

static bool child_alive(child *c) {
        int status;
        return waitpid(c->pid, &status, WNOHANG) == 0;
}

static void child_stop(child *c) {
        int status;
        double deadline = mono_s() + 30;

        kill(c->pid, SIGTERM);
        while (waitpid(c->pid, &status, WNOHANG) == 0) {
                child_pump(c);
                if (mono_s() > deadline) {
                        note("pid %d ignored SIGTERM for 30 s; killing it", (int) c->pid);
                        kill(c->pid, SIGKILL);
                        waitpid(c->pid, &status, 0);
                        break;
                }
                usleep(20000);
        }
        child_pump(c);
        close(c->err_fd);
        fclose(c->log);
        for (size_t i = 0; i < FH_ARRAY_SIZE(live); i++)
                if (live[i] == c->pid)
                        live[i] = 0;
}

/* ---- throughput ---- */

typedef struct producer_ctx {
        rd_kafka_t *rk;
        const fh_registry *reg;
        char **topic_of_kind;
        unsigned long long n;
        unsigned long long limit;
} producer_ctx;

static void produce(rd_kafka_t *rk, const char *topic, const char *key, size_t key_len,
                    const char *value, size_t len) {
        for (;;) {
                rd_kafka_resp_err_t e = rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic),
                                                          RD_KAFKA_V_KEY(key, key_len),
                                                          RD_KAFKA_V_VALUE((void *) value, len),
                                                          RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                                          RD_KAFKA_V_END);
                if (!e)
                        return;
                if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL)
                        die("produce to %s: %s", topic, rd_kafka_err2str(e));
                rd_kafka_poll(rk, 10);
        }
}

static int on_sim_line(void *userdata, const char *line, size_t len) {
        producer_ctx *pc = userdata;
        static const char prefix[] = "{\"sensor\":\"";

        if (pc->n >= pc->limit)
                return 1;
        if (len < sizeof(prefix) || memcmp(line, prefix, sizeof(prefix) - 1) != 0)
                die("unexpected line from the simulator: %.*s", (int) len, line);
        const char *id = line + sizeof(prefix) - 1;
        const char *q = memchr(id, '"', len - (sizeof(prefix) - 1));
        const fh_station *st = q ? fh_registry_find(pc->reg, id, (size_t) (q - id)) : NULL;
        if (!st)
                die("simulated sensor not in the registry: %.*s", (int) len, line);
        produce(pc->rk, pc->topic_of_kind[st->kind], id, (size_t) (q - id), line, len);
        pc->n++;
        if ((pc->n & 0xffff) == 0)
                rd_kafka_poll(pc->rk, 0);
        return 0;
}

static void dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
        (void) rk;
        (void) opaque;
        if (m->err)
                die("delivery failed: %s", rd_kafka_err2str(m->err));
}

/* dir/name, for the caller to free. */
static char *path_join(const char *dir, const char *name) {
        char *p;
        if (asprintf(&p, "%s/%s", dir, name) < 0)
                fh_oom();
        return p;
}

static void write_file(const char *path, const char *text) {
        FILE *f = fopen(path, "we");
        if (!f || fputs(text, f) < 0 || fclose(f) != 0)
                die("cannot write %s: %s", path, strerror(errno));
}

#define RUNS_MAX 16

typedef struct variant {
        const char *name;
        const char *props;             /* consumer properties, "k=v,k=v" or "" */
} variant;

/* A latency run's shards when it names none: --shards, wherever that is
 * on the command line. */
#define SHARDS_OF_OPTS (-3)

typedef struct lat_run {
        const char *name;
        const char *linger;            /* the readings' producer */
        const char *daemon_linger;     /* NULL: the daemon's own setting */
        bool kafka_only;               /* no daemon: one Kafka hop */
        int shards;                    /* the daemon's `shards:`, -1: none written */
        const char *fenghuo;           /* NULL: --fenghuo */
} lat_run;

/* One daemon of the throughput phase: a `shards:` setting (-1: the key is
 * not written, so a daemon from before shards runs too) and a binary (an
 * older build, for before/after in one run on one broker). */
typedef struct daemon_spec {
        const char *name;
        int shards;
        const char *fenghuo;           /* NULL: --fenghuo */
} daemon_spec;

typedef struct opts {
        const char *brokers, *fenghuo, *rules, *stations, *workdir, *self;
        unsigned long long readings;
        double rate;
        double seconds;
        variant variants[RUNS_MAX];
        size_t n_variants;
        lat_run runs[RUNS_MAX];
        size_t n_runs;
        bool skip_throughput, skip_latency;
        double soak_s;                 /* > 0: only the soak, this long */
        const char *lateness;          /* the daemon's lateness, NULL: its default */
        int shards;                    /* the daemon's `shards:`, -1: none written */
        daemon_spec daemons[RUNS_MAX];
        size_t n_daemons;
        pid_t broker_pid;              /* 0: unknown, its CPU not measured */
        char tag[32];
} opts;

/* Observes a consumer group from outside: the time its committed offsets
 * first cover every produced message. Returns that time, or NAN when the
 * child died or the timeout passed. */
static double wait_committed(const opts *o, const char *group, rd_kafka_topic_partition_list_t *ends,
                             int64_t total, child *c, double timeout_s, double *ret_first) {
        rd_kafka_conf_t *conf = rd_kafka_conf_new();
        set(conf, "bootstrap.servers", o->brokers);
        set(conf, "group.id", group);
        set(conf, "enable.auto.commit", "false");
        rd_kafka_t *mon = client(RD_KAFKA_CONSUMER, conf);
        rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_copy(ends);
        double deadline = mono_s() + timeout_s, done = NAN, last_note = mono_s();

        *ret_first = NAN;
        for (;;) {
                child_pump(c);
                if (!child_alive(c)) {
                        note("the process under test exited early; see its log");
                        break;
                }
                for (int i = 0; i < l->cnt; i++)
                        l->elems[i].offset = RD_KAFKA_OFFSET_INVALID;
                rd_kafka_resp_err_t e = rd_kafka_committed(mon, l, 5000);
                double now = mono_s();
                if (!e) {
                        int64_t sum = 0;
                        for (int i = 0; i < l->cnt; i++)
                                if (l->elems[i].offset > 0)
                                        sum += l->elems[i].offset;
                        if (sum > 0 && isnan(*ret_first))
                                *ret_first = now;
                        if (sum >= total) {
                                done = now;
                                break;
                        }
                        if (now - last_note > 5) {
                                note("  committed %lld of %lld", (long long) sum, (long long) total);
                                last_note = now;
                        }
                }
                if (now > deadline) {
                        note("timed out waiting for group %s to commit everything", group);
                        break;
                }
                usleep(20000);
        }
        rd_kafka_topic_partition_list_destroy(l);
        rd_kafka_destroy(mon);
        return done;
}

static void config_text(fh_buf *b, const opts *o, const char *rules, const char *group, char **topics,
                        const char *alerts, const char *consumer_props, const char *daemon_linger, int shards) {
        static const char *const kinds[FH_KIND__MAX] = { "rain", "water_level", "landslide", "bridge" };

        /* Only when asked: a daemon from before shards refuses the key. */
        if (shards >= 0)
                fh_buf_printf(b, "shards: %d\n", shards);
        fh_buf_printf(b, "rules: %s\nstations: %s\nstdout: false\nstats_interval: 1s\nlog_level: info\n"
                      "kafka:\n  brokers: \"%s\"\n  group_id: %s\n  alerts_topic: %s\n  topics:\n",
                      rules, o->stations, o->brokers, group, alerts);
        for (int k = 0; k < FH_KIND__MAX; k++)
                if (topics[k])
                        fh_buf_printf(b, "    %s: %s\n", kinds[k], topics[k]);

        /* Committed offsets are what the observer sees; the default 5 s
         * auto-commit interval would hide when the work was done. */
        fh_buf_printf(b, "  consumer_properties:\n    auto.commit.interval.ms: \"100\"\n");
        char *copy = fh_strdup(consumer_props ? consumer_props : ""), *save = NULL;
        for (char *kv = strtok_r(copy, ",", &save); kv; kv = strtok_r(NULL, ",", &save)) {
                char *eq = strchr(kv, '=');
                if (!eq)
                        die("property '%s' is not k=v", kv);
                *eq = 0;
                fh_buf_printf(b, "    %s: \"%s\"\n", kv, eq + 1);
        }
        free(copy);
        if (daemon_linger)
                fh_buf_printf(b, "  producer_properties:\n    linger.ms: \"%s\"\n", daemon_linger);
}

/* Runs `fenghuo run --config cfgpath --check`: 0 when that daemon accepts
 * the configuration, else -1 with its first complaint in why. */
static int daemon_accepts(const char *fenghuo, const char *cfgpath, char *why, size_t why_size) {
        int fds[2], status;
        pid_t pid;
        posix_spawn_file_actions_t fa;
        char *argv[] = { (char *) fenghuo, "run", "--config", (char *) cfgpath, "--check", NULL };

        if (pipe2(fds, O_CLOEXEC) < 0)
                die("pipe: %s", strerror(errno));
        posix_spawn_file_actions_init(&fa);
        posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
        posix_spawn_file_actions_adddup2(&fa, fds[1], STDOUT_FILENO);
        posix_spawn_file_actions_adddup2(&fa, fds[1], STDERR_FILENO);
        int r = posix_spawn(&pid, fenghuo, &fa, NULL, argv, environ);
        posix_spawn_file_actions_destroy(&fa);
        close(fds[1]);
        if (r != 0)
                die("cannot run %s: %s", fenghuo, strerror(r));
        fh_buf out = FH_BUF_NULL;
        for (;;) {
                fh_buf_reserve(&out, 4096);
                ssize_t n = read(fds[0], out.data + out.len, out.cap - out.len - 1);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        break;
                out.len += (size_t) n;
        }
        close(fds[0]);
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
                ;
        fh_buf_reserve(&out, 1);
        out.data[out.len] = 0;
        bool ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
        if (!ok) {
                /* The first error line says it ("unknown key 'shards'"). */
                const char *line = out.data, *err = strstr(out.data, "error");
                if (err) {
                        while (err > out.data && err[-1] != '\n')
                                err--;
                        line = err;
                }
                snprintf(why, why_size, "%.*s", (int) strcspn(line, "\n"), line);
                for (char *p = why; *p; p++)
                        if (*p == ' ' || *p == '\t')
                                *p = '_';   /* one "name value" line */
        }
        fh_buf_free(&out);
        return ok ? 0 : -1;
}

/* The plain consumer once: prints PREFIX.s, .cpu_s, .per_s, .steady_per_s;
 * returns the whole-run and steady rates. */
static void plain_run(const opts *o, const variant *v, const char *prefix, const char *list,
                      rd_kafka_topic_partition_list_t *ends, int64_t total, double *ret_rate, double *ret_steady) {
        char group[160], count[32];
        child c;
        char *path, *name;
        double first, done, cpu;

        snprintf(group, sizeof(group), "bench-%s-%s", o->tag, prefix);
        snprintf(count, sizeof(count), "%lld", (long long) total);
        if (asprintf(&name, "drain-%s.log", prefix) < 0)
                fh_oom();
        path = path_join(o->workdir, name);
        free(name);
        char *dargv[] = { (char *) o->self, "drain", "--brokers", (char *) o->brokers, "--group", group,
                          "--topics", (char *) list, "--count", count, "--props", (char *) v->props, NULL };
        note("%s: plain consumer draining %lld messages (consumer properties: %s)", prefix, (long long) total,
             v->props[0] ? v->props : "none");
        machine_cpu m0 = machine_cpu_now();
        double b0 = o->broker_pid > 0 ? child_cpu_s(o->broker_pid) : NAN;
        spawn(&c, dargv, path);
        done = wait_committed(o, group, ends, total, &c, 600, &first);
        cpu = child_cpu_s(c.pid);
        print_machine(o->broker_pid, prefix, m0, b0);
        print_threads(c.pid, prefix);
        child_stop(&c);
        if (isnan(done))
                die("the plain consumer did not finish; see %s", path);
        double s = done - c.t_spawn;
        printf("%s.s %.3f\n", prefix, s);
        printf("%s.cpu_s %.3f\n", prefix, cpu);
        printf("%s.per_s %.0f\n", prefix, (double) total / s);
        printf("%s.us_cpu_per_reading %.3f\n", prefix, cpu / (double) total * 1e6);
        /* Its own view: from process start to the last message in hand. */
        FILE *f = fopen(path, "re");
        char line[512];
        double d_first = NAN, d_last = NAN;
        while (f && fgets(line, sizeof(line), f)) {
                sscanf(line, "drain_first_s %lf", &d_first);
                sscanf(line, "drain_last_s %lf", &d_last);
        }
        if (f)
                fclose(f);
        printf("%s.last_message_s %.3f\n", prefix, d_last);
        /* First to last message: without the group join. */
        *ret_steady = d_last > d_first ? (double) total / (d_last - d_first) : NAN;
        printf("%s.steady_per_s %.0f\n", prefix, *ret_steady);
        *ret_rate = (double) total / s;
        free(path);
}

/* One daemon over the whole backlog: prints PREFIX.s, .cpu_s, .per_s,
 * .us_cpu_per_reading, .steady_per_s, or PREFIX.skipped when that daemon
 * refuses the configuration (an older one and `shards:`). */
static void daemon_run(const opts *o, const variant *v, const daemon_spec *ds, const char *prefix, char **topics,
                       const char *alerts, rd_kafka_topic_partition_list_t *ends, int64_t total, double *ret_rate,
                       double *ret_steady) {
        char group[160], why[256];
        fh_buf cfg = FH_BUF_NULL;
        child c;
        char *path, *cfgpath, *name;
        double first, done, cpu;
        const char *fenghuo = ds->fenghuo ? ds->fenghuo : o->fenghuo;

        *ret_rate = *ret_steady = NAN;
        snprintf(group, sizeof(group), "bench-%s-%s", o->tag, prefix);
        config_text(&cfg, o, o->rules, group, topics, alerts, v->props, NULL, ds->shards);
        if (asprintf(&name, "throughput-%s.yaml", prefix) < 0)
                fh_oom();
        cfgpath = path_join(o->workdir, name);
        free(name);
        write_file(cfgpath, cfg.data);
        fh_buf_free(&cfg);
        printf("%s.fenghuo %s\n", prefix, fenghuo);
        if (ds->shards < 0)
                printf("%s.shards none\n", prefix);
        else
                printf("%s.shards %d\n", prefix, ds->shards);
        if (daemon_accepts(fenghuo, cfgpath, why, sizeof(why)) < 0) {
                note("%s: %s refuses the configuration (%s); skipped", prefix, fenghuo, why);
                printf("%s.skipped %s\n", prefix, why);
                free(cfgpath);
                return;
        }
        if (asprintf(&name, "daemon-throughput-%s.log", prefix) < 0)
                fh_oom();
        path = path_join(o->workdir, name);
        free(name);
        char *argv[] = { (char *) fenghuo, "run", "--config", cfgpath, NULL };
        note("%s: daemon consuming %lld messages", prefix, (long long) total);
        machine_cpu m0 = machine_cpu_now();
        double b0 = o->broker_pid > 0 ? child_cpu_s(o->broker_pid) : NAN;
        spawn(&c, argv, path);
        c.total = total;
        done = wait_committed(o, group, ends, total, &c, 600, &first);
        cpu = child_cpu_s(c.pid);
        print_machine(o->broker_pid, prefix, m0, b0);
        print_threads(c.pid, prefix);
        child_stop(&c);
        if (isnan(done))
                die("the daemon did not finish; see %s", path);
        double s = done - c.t_spawn;
        printf("%s.s %.3f\n", prefix, s);
        printf("%s.cpu_s %.3f\n", prefix, cpu);
        printf("%s.per_s %.0f\n", prefix, (double) total / s);
        printf("%s.per_cpu_s %.0f\n", prefix, (double) total / cpu);
        printf("%s.us_cpu_per_reading %.3f\n", prefix, cpu / (double) total * 1e6);
        /* From the daemon's 1 s stats lines, start-up and the end left out. */
        if (c.have_stats && c.stats_t1 > c.stats_t0)
                *ret_steady = (double) (c.stats_c1 - c.stats_c0) / (c.stats_t1 - c.stats_t0);
        printf("%s.steady_per_s %.0f\n", prefix, *ret_steady);
        *ret_rate = (double) total / s;
        free(path);
        free(cfgpath);
}

/* For one variant of consumer properties: the plain consumer, each daemon,
 * and the plain consumer again, all over the same backlog. The ratios are
 * against the faster of the two plain runs, so that the broker warming up
 * (or the machine getting busier) during the run cannot flatter the daemon. */
static void throughput_variant(const opts *o, const variant *v, char **topics, const char *alerts,
                               const char *list, rd_kafka_topic_partition_list_t *ends, int64_t total) {
        char prefix[80];
        double p_rate[2], p_steady[2], d_rate[RUNS_MAX], d_steady[RUNS_MAX];

        printf("%s.consumer_properties %s\n", v->name, v->props[0] ? v->props : "none");
        /* Not counted: the broker works harder (4 to 5 CPU-s against 1 to 2
         * at 10 M readings, 2026-12-07) during the first daemon runs of a
         * benchmark than during the later ones, settled or not; a first
         * daemon run of its own keeps that off the runs compared. */
        static const daemon_spec warmup = { "warmup", -1, NULL };
        double w_rate, w_steady;
        snprintf(prefix, sizeof(prefix), "%s.warmup", v->name);
        daemon_run(o, v, &warmup, prefix, topics, alerts, ends, total, &w_rate, &w_steady);
        snprintf(prefix, sizeof(prefix), "%s.plain_before", v->name);
        plain_run(o, v, prefix, list, ends, total, &p_rate[0], &p_steady[0]);
        for (size_t i = 0; i < o->n_daemons; i++) {
                snprintf(prefix, sizeof(prefix), "%s.%s", v->name, o->daemons[i].name);
                daemon_run(o, v, &o->daemons[i], prefix, topics, alerts, ends, total, &d_rate[i], &d_steady[i]);
        }
        snprintf(prefix, sizeof(prefix), "%s.plain_after", v->name);
        plain_run(o, v, prefix, list, ends, total, &p_rate[1], &p_steady[1]);

        double plain = fmax(p_rate[0], p_rate[1]), plain_steady = fmax(p_steady[0], p_steady[1]);
        printf("%s.plain_per_s %.0f\n", v->name, plain);
        printf("%s.plain_steady_per_s %.0f\n", v->name, plain_steady);
        printf("%s.daemons", v->name);
        for (size_t i = 0; i < o->n_daemons; i++)
                printf(" %s", o->daemons[i].name);
        printf("\n");
        for (size_t i = 0; i < o->n_daemons; i++) {
                if (isnan(d_rate[i]))
                        continue;
                printf("%s.%s.vs_plain %.3f\n", v->name, o->daemons[i].name, d_rate[i] / plain);
                printf("%s.%s.vs_plain_steady %.3f\n", v->name, o->daemons[i].name, d_steady[i] / plain_steady);
        }
}

/* Whatever the broker still does after the produce (flushes, segment
 * work) must not land on the first run timed: waits until it uses under
 * a tenth of a core over a second, for at most a minute. On 2026-12-07
 * that took a second; the broker's extra CPU during the first daemon runs
 * is something else (the warm-up run in throughput_variant). */
static void settle_broker(const opts *o) {
        if (o->broker_pid <= 0)
                return;
        double t0 = mono_s(), c0 = child_cpu_s(o->broker_pid), used = NAN;
        while (mono_s() - t0 < 60) {
                sleep(1);
                double c1 = child_cpu_s(o->broker_pid);
                used = c1 - c0;
                c0 = c1;
                if (used < 0.1)
                        break;
        }
        note("broker settled after %.0f s (%.2f CPU-s in its last second)", mono_s() - t0, used);
        printf("broker_settle_s %.0f\n", mono_s() - t0);
}

static void throughput(const opts *o, const fh_registry *reg) {
        static const char *const kinds[FH_KIND__MAX] = { "rain", "water_level", "landslide", "bridge" };
        char *topics[FH_KIND__MAX + 1];
        char alerts[128], list[1024] = "";

        for (int k = 0; k < FH_KIND__MAX; k++) {
                if (asprintf(&topics[k], "tp-%s-%s", o->tag, kinds[k]) < 0)
                        fh_oom();
                snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s%s", k ? "," : "", topics[k]);
        }
        snprintf(alerts, sizeof(alerts), "tp-%s-alerts", o->tag);
        topics[FH_KIND__MAX] = alerts;
        create_topics(o->brokers, topics, FH_KIND__MAX + 1);

        /* Produce. Simulated readings every 5 minutes for as long as it takes. */
        rd_kafka_conf_t *conf = rd_kafka_conf_new();
        set(conf, "bootstrap.servers", o->brokers);
        set(conf, "linger.ms", "20");
        set(conf, "batch.num.messages", "10000");
        set(conf, "queue.buffering.max.messages", "1000000");
        rd_kafka_conf_set_dr_msg_cb(conf, dr_cb);
        rd_kafka_t *prod = client(RD_KAFKA_PRODUCER, conf);
        producer_ctx pc = { prod, reg, topics, 0, o->readings };
        fh_sim_options so = { .seed = 1, .step_ms = 5 * 60000LL, .tz_offset_min = 480, .storm_scale = 1.0 };
        fh_time_parse_rfc3339("2023-07-29T00:00:00+08:00", 25, &so.start_ms, NULL);
        size_t per_step = reg->n_stations ? reg->n_stations : 1;
        so.duration_ms = (int64_t) ((o->readings + per_step - 1) / per_step + 1) * so.step_ms;
        double t0 = mono_s();
        int r = fh_simulate(reg, &so, on_sim_line, &pc);
        if (r < 0)
                die("simulate: %s", strerror(-r));
        while (rd_kafka_flush(prod, 1000) == RD_KAFKA_RESP_ERR__TIMED_OUT)
                ;
        double t_prod = mono_s() - t0;
        rd_kafka_topic_partition_list_t *ends = all_partitions(topics, FH_KIND__MAX);
        int64_t total = end_offsets(prod, ends);
        rd_kafka_destroy(prod);
        note("produced %llu readings in %.1f s (%.0f/s); %lld in the topics", pc.n, t_prod,
             (double) pc.n / t_prod, (long long) total);
        printf("produced %lld\n", (long long) total);
        printf("produce_s %.3f\n", t_prod);
        printf("produce_per_s %.0f\n", (double) total / t_prod);

        settle_broker(o);
        for (size_t v = 0; v < o->n_variants; v++)
                throughput_variant(o, &o->variants[v], topics, alerts, list, ends, total);

        rd_kafka_topic_partition_list_destroy(ends);
        for (int k = 0; k < FH_KIND__MAX; k++)
                free(topics[k]);
}

/* ---- the plain consumer ---- */

static int cmd_drain(int argc, char **argv) {
        const char *brokers = NULL, *group = NULL, *topics = NULL, *props = "";
        long long want = -1;
        double t0 = mono_s();

        for (int i = 2; i + 1 < argc; i += 2) {
                if (!strcmp(argv[i], "--brokers"))
                        brokers = argv[i + 1];
                else if (!strcmp(argv[i], "--group"))
                        group = argv[i + 1];
                else if (!strcmp(argv[i], "--topics"))
                        topics = argv[i + 1];
                else if (!strcmp(argv[i], "--count"))
                        want = atoll(argv[i + 1]);
                else if (!strcmp(argv[i], "--props"))
                        props = argv[i + 1];
        }
        if (!brokers || !group || !topics || want < 0)
                die("usage: bench_daemon drain --brokers B --group G --topics T1,T2 --count N");
        /* It waits for SIGTERM at the end: not forever if the parent is gone. */
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        if (getppid() == 1)
                return 1;

        /* What the daemon sets for its consumer, nothing more, plus the
         * variant's properties: the same fetch settings. */
        rd_kafka_conf_t *conf = rd_kafka_conf_new();
        set(conf, "bootstrap.servers", brokers);
        set(conf, "group.id", group);
        set(conf, "auto.offset.reset", "earliest");
        set(conf, "auto.commit.interval.ms", "100");
        set_list(conf, props);
        rd_kafka_t *rk = client(RD_KAFKA_CONSUMER, conf);
        rd_kafka_poll_set_consumer(rk);
        rd_kafka_topic_partition_list_t *sub = rd_kafka_topic_partition_list_new(4);
        char *copy = fh_strdup(topics), *save = NULL;
        for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save))
                rd_kafka_topic_partition_list_add(sub, t, RD_KAFKA_PARTITION_UA);
        rd_kafka_resp_err_t e = rd_kafka_subscribe(rk, sub);
        if (e)
                die("subscribe: %s", rd_kafka_err2str(e));
        rd_kafka_topic_partition_list_destroy(sub);
        free(copy);

        long long n = 0;
        unsigned long long bytes = 0;
        double first = NAN, last = NAN;
        while (n < want) {
                rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
                if (!m)
                        continue;
                if (!m->err) {
                        if (n == 0)
                                first = mono_s();
                        n++;
                        bytes += m->len;
                } else if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
                        fprintf(stderr, "drain: %s\n", rd_kafka_message_errstr(m));
                rd_kafka_message_destroy(m);
        }
        last = mono_s();
        rd_kafka_commit(rk, NULL, 0);
        printf("drain_messages %lld\ndrain_bytes %llu\ndrain_first_s %.3f\ndrain_last_s %.3f\n", n, bytes,
               first - t0, last - t0);
        fflush(stdout);
        /* Stay in the group until told to go, like the daemon. */
        signal(SIGTERM, SIG_DFL);
        for (;;) {
                rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
                if (m)
                        rd_kafka_message_destroy(m);
        }
}

/* ---- latency ---- */

typedef struct flip {
        int64_t ts_ms;
        double t_sent;
        bool timed;                  /* not during the warm-up */
} flip;

typedef struct received {
        int gauge;
        int64_t ts_ms;
        double t_recv;
        bool raised;
} received;

typedef struct lat_ctx {
        rd_kafka_t *consumer;
        const fh_registry *reg;
        bool kafka_only;             /* reading readings, not alerts */
        int *gauge_of_station;       /* station index -> flip gauge, or -1 */
        received *rx;
        size_t n_rx, cap_rx;
        atomic_bool stop;
        atomic_long seen;            /* arrivals for gauge 0 (warm-up) */
} lat_ctx;

static const char *json_str(const char *json, size_t len, const char *key, size_t *ret_len) {
        char pat[32];
        snprintf(pat, sizeof(pat), "\"%s\":\"", key);
        const char *p = memmem(json, len, pat, strlen(pat));
        if (!p)
                return NULL;
        p += strlen(pat);
        const char *q = memchr(p, '"', (size_t) (json + len - p));
        if (!q)
                return NULL;
        *ret_len = (size_t) (q - p);
        return p;
}

/* The flip gauge and evaluation time of an alert, or of a reading in a
 * Kafka-only run; -1 for anything else. */
static int classify(lat_ctx *lc, const char *j, size_t len, int64_t *ret_ts, bool *ret_raised) {
        const fh_station *st;

        if (lc->kafka_only) {
                fh_reading r;
                if (fh_reading_parse(j, len, &r, NULL, 0) != FH_REJECT_NONE)
                        return -1;
                st = fh_registry_find(lc->reg, r.sensor, r.sensor_len);
                *ret_ts = r.ts_ms;
                *ret_raised = r.values[0].v >= 100;
        } else {
                const char *s, *ev, *ts;
                size_t sl = 0, el = 0, tl = 0;   /* json_str sets them only when found */
                s = json_str(j, len, "sensor", &sl);
                ev = json_str(j, len, "event", &el);
                ts = json_str(j, len, "ts", &tl);
                if (!s || !ev || !ts || fh_time_parse_rfc3339(ts, tl, ret_ts, NULL) < 0)
                        return -1;
                st = fh_registry_find(lc->reg, s, sl);
                *ret_raised = el == 6 && !memcmp(ev, "raised", 6);
        }
        return st ? lc->gauge_of_station[st->index] : -1;
}

static void *arrivals(void *arg) {
        lat_ctx *lc = arg;

        while (!atomic_load(&lc->stop)) {
                rd_kafka_message_t *m = rd_kafka_consumer_poll(lc->consumer, 50);
                if (!m)
                        continue;
                double t = mono_s();
                int64_t ts;
                bool raised;
                int g = m->err || !m->payload ? -1 : classify(lc, m->payload, m->len, &ts, &raised);
                if (g >= 0) {
                        if (lc->n_rx == lc->cap_rx) {
                                lc->cap_rx = lc->cap_rx ? lc->cap_rx * 2 : 4096;
                                lc->rx = fh_realloc(lc->rx, lc->cap_rx * sizeof(*lc->rx));
                        }
                        lc->rx[lc->n_rx++] = (received) { g, ts, t, raised };
                        if (g == 0)
                                atomic_fetch_add(&lc->seen, 1);
                }
                rd_kafka_message_destroy(m);
        }
        return NULL;
}

static int cmp_double(const void *a, const void *b) {
        double x = *(const double *) a, y = *(const double *) b;
        return x < y ? -1 : x > y;
}

static double pct(const double *v, size_t n, double p) {
        if (n == 0)
                return NAN;
        size_t i = (size_t) ceil(p / 100.0 * (double) n);
        return v[i == 0 ? 0 : i - 1];
}

static void latency(const opts *o, const fh_registry *reg, const lat_run *run) {
        char topic[160], alerts[160], group[160];
        char *topics[FH_KIND__MAX] = { topic, NULL, NULL, NULL };
        char *path = NULL, *rules = NULL, *cfgpath = NULL, *name;
        fh_buf cfg = FH_BUF_NULL, line = FH_BUF_NULL;
        const char *rn = run->name;

        /* Rain gauges: the first FLIP_GAUGES flip, the others carry the load. */
        size_t n_rain = 0;
        const fh_station **rain = fh_calloc(reg->n_stations + 1, sizeof(*rain));
        for (size_t i = 0; i < reg->n_stations; i++)
                if (reg->stations[i].kind == FH_KIND_RAIN)
                        rain[n_rain++] = &reg->stations[i];
        if (n_rain < FLIP_GAUGES + 100)
                die("the registry needs at least %d rain gauges for the latency run", FLIP_GAUGES + 100);
        size_t n_load = n_rain - FLIP_GAUGES;

        snprintf(topic, sizeof(topic), "lat-%s-%s-rain", o->tag, rn);
        snprintf(alerts, sizeof(alerts), "lat-%s-%s-alerts", o->tag, rn);
        char *names[] = { topic, alerts };
        create_topics(o->brokers, names, 2);

        if (!run->kafka_only) {
                /* One rule that follows each reading: 200 mm raises, 0 mm clears. */
                rules = path_join(o->workdir, "rules-latency");
                mkdir(rules, 0755);
                path = path_join(rules, "flip.yaml");
                write_file(path, "rules:\n"
                                 "  - id: flip\n"
                                 "    title: latency probe\n"
                                 "    kind: rain\n"
                                 "    levels:\n"
                                 "      red: last(rain_mm) >= 100\n"
                                 "    report: last(rain_mm)\n"
                                 "    clear_after: 0s\n");
                free(path);
                snprintf(group, sizeof(group), "lat-%s-%s-daemon", o->tag, rn);
                config_text(&cfg, o, rules, group, topics, alerts, "", run->daemon_linger,
                            run->shards == SHARDS_OF_OPTS ? o->shards : run->shards);
                if (asprintf(&name, "latency-%s.yaml", rn) < 0)
                        fh_oom();
                cfgpath = path_join(o->workdir, name);
                free(name);
                write_file(cfgpath, cfg.data);
        }

        /* The observer: assigned, no group, from the start of a fresh topic,
         * so it is reading before the first message exists. */
        lat_ctx lc = { .reg = reg, .kafka_only = run->kafka_only };
        lc.gauge_of_station = fh_malloc((reg->n_stations + 1) * sizeof(int));
        for (size_t i = 0; i < reg->n_stations; i++)
                lc.gauge_of_station[i] = -1;
        for (int g = 0; g < FLIP_GAUGES; g++)
                lc.gauge_of_station[rain[g]->index] = g;
        rd_kafka_conf_t *conf = rd_kafka_conf_new();
        set(conf, "bootstrap.servers", o->brokers);
        set(conf, "group.id", "unused");
        set(conf, "enable.auto.commit", "false");
        lc.consumer = client(RD_KAFKA_CONSUMER, conf);
        rd_kafka_poll_set_consumer(lc.consumer);
        rd_kafka_topic_partition_list_t *ap = rd_kafka_topic_partition_list_new(PARTITIONS);
        for (int p = 0; p < PARTITIONS; p++)
                rd_kafka_topic_partition_list_add(ap, run->kafka_only ? topic : alerts, p)->offset =
                        RD_KAFKA_OFFSET_BEGINNING;
        rd_kafka_assign(lc.consumer, ap);
        rd_kafka_topic_partition_list_destroy(ap);
        pthread_t th;
        pthread_create(&th, NULL, arrivals, &lc);

        conf = rd_kafka_conf_new();
        set(conf, "bootstrap.servers", o->brokers);
        set(conf, "linger.ms", run->linger);
        rd_kafka_conf_set_dr_msg_cb(conf, dr_cb);
        rd_kafka_t *prod = client(RD_KAFKA_PRODUCER, conf);

        child c = { .pid = 0 };
        if (!run->kafka_only) {
                if (asprintf(&name, "daemon-latency-%s.log", rn) < 0)
                        fh_oom();
                path = path_join(o->workdir, name);
                free(name);
                char *argv[] = { (char *) (run->fenghuo ? run->fenghuo : o->fenghuo), "run", "--config", cfgpath,
                                 NULL };
                spawn(&c, argv, path);
        }

        /* Warm-up: flip gauge 0 until it comes back twice, so every client
         * is connected (and the daemon's group joined) before timing. */
        double deadline = mono_s() + 60;
        int64_t last_ts = 0;
        bool high = false;
        while (atomic_load(&lc.seen) < 2) {
                if (c.pid) {
                        child_pump(&c);
                        if (!child_alive(&c))
                                die("the daemon exited; see %s", path);
                }
                if (mono_s() > deadline)
                        die("nothing came back within 60 s%s%s", path ? "; see " : "", path ? path : "");
                int64_t ts = wall_ms();
                if (ts <= last_ts)
                        ts = last_ts + 1;
                last_ts = ts;
                high = !high;
                fh_buf_reset(&line);
                fh_buf_printf(&line, "{\"sensor\":\"%s\",\"ts\":%lld,\"values\":{\"rain_mm\":%d}}", rain[0]->id,
                              (long long) ts, high ? 200 : 0);
                produce(prod, topic, rain[0]->id, rain[0]->id_len, line.data, line.len);
                rd_kafka_poll(prod, 0);
                usleep(200000);
        }
        sleep(1);
        if (c.pid)
                child_pump(&c);

        /* A steady rate in 1 ms slots: WARM_MS untimed, so every partition,
         * connection and code path is in use before timing starts, then the
         * timed phase. */
        size_t per_ms = (size_t) llround(o->rate / 1000.0);
        if (per_ms < 1)
                per_ms = 1;
        size_t slots = (size_t) (o->seconds * 1000.0), warm = WARM_MS;
        size_t total = per_ms * slots, n_flips = per_ms * (slots + warm) / FLIP_EVERY + 1;
        flip **sent = fh_calloc(FLIP_GAUGES, sizeof(*sent));
        size_t *n_sent = fh_calloc(FLIP_GAUGES, sizeof(*n_sent));
        for (int g = 0; g < FLIP_GAUGES; g++)
                sent[g] = fh_calloc(n_flips / FLIP_GAUGES + 2, sizeof(**sent));
        int64_t *gauge_last = fh_calloc(n_rain, sizeof(*gauge_last));
        bool *gauge_high = fh_calloc(FLIP_GAUGES, sizeof(*gauge_high));
        gauge_high[0] = high;
        gauge_last[0] = last_ts;
        size_t k = 0, next_flip = 0, next_load = 0;
        uint64_t rnd = 88172645463325252ULL;
        struct timespec t0;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        double start = mono_s(), phase0 = INFINITY, lag_max = 0;

        note("latency %s: %zu readings at %.0f/s for %.0f s, 1 in %d flips an alert (producer linger.ms %s, "
             "daemon producer linger.ms %s)", rn, total, o->rate, o->seconds, FLIP_EVERY, run->linger,
             run->kafka_only ? "n/a: no daemon" : run->daemon_linger ? run->daemon_linger : "as shipped");
        for (size_t s = 0; s < warm + slots; s++) {
                bool timed = s >= warm;
                struct timespec due = t0;
                long long ns = (long long) s * 1000000LL + t0.tv_nsec;
                due.tv_sec += (time_t) (ns / 1000000000LL);
                due.tv_nsec = (long) (ns % 1000000000LL);
                clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &due, NULL);
                double now = mono_s(), lag = (now - start) * 1000.0 - (double) s;
                if (s == warm)
                        phase0 = now;
                if (timed && lag > lag_max)
                        lag_max = lag;
                for (size_t i = 0; i < per_ms; i++, k++) {
                        bool is_flip = k % FLIP_EVERY == 0;
                        size_t gi = is_flip ? next_flip++ % FLIP_GAUGES : FLIP_GAUGES + next_load++ % n_load;
                        const fh_station *st = rain[gi];
                        int64_t ts = wall_ms();
                        /* Each reading of a gauge needs a new timestamp, or it is a duplicate. */
                        if (ts <= gauge_last[gi])
                                ts = gauge_last[gi] + 1;
                        gauge_last[gi] = ts;
                        double v;
                        if (is_flip) {
                                gauge_high[gi] = !gauge_high[gi];
                                v = gauge_high[gi] ? 200 : 0;
                        } else {
                                rnd ^= rnd << 13;
                                rnd ^= rnd >> 7;
                                rnd ^= rnd << 17;
                                v = (double) (rnd % 50) / 10.0;
                        }
                        fh_buf_reset(&line);
                        fh_buf_printf(&line, "{\"sensor\":\"%s\",\"ts\":%lld,\"values\":{\"rain_mm\":%.1f}}",
                                      st->id, (long long) ts, v);
                        if (is_flip)
                                sent[gi][n_sent[gi]++] = (flip) { ts, mono_s(), timed };
                        produce(prod, topic, st->id, st->id_len, line.data, line.len);
                }
                rd_kafka_poll(prod, 0);
                if (c.pid && (s & 255) == 0)
                        child_pump(&c);
        }
        double phase_s = mono_s() - phase0;
        int queued_at_end = rd_kafka_outq_len(prod);
        /* Let the last ones arrive. */
        for (int i = 0; i < 150; i++) {
                rd_kafka_poll(prod, 20);
                if (c.pid)
                        child_pump(&c);
        }
        atomic_store(&lc.stop, true);
        pthread_join(th, NULL);
        double cpu = NAN;
        if (c.pid) {
                cpu = child_cpu_s(c.pid);
                child_stop(&c);
        }

        /* Match each arrival of the timed phase to its reading. */
        size_t flips = 0, matched = 0, unmatched = 0, raised = 0;
        for (int g = 0; g < FLIP_GAUGES; g++)
                for (size_t i = 0; i < n_sent[g]; i++)
                        flips += sent[g][i].timed;
        double *lat = fh_malloc((flips + 1) * sizeof(*lat));
        if (asprintf(&name, "latency-%s.tsv", rn) < 0)
                fh_oom();
        char *tsv_path = path_join(o->workdir, name);
        free(name);
        FILE *tsv = fopen(tsv_path, "we");
        if (!tsv)
                die("cannot write %s: %s", tsv_path, strerror(errno));
        fputs("sent_s\tlatency_ms\tgauge\traised\n", tsv);
        for (size_t i = 0; i < lc.n_rx; i++) {
                const received *r = &lc.rx[i];
                if (r->t_recv < phase0)
                        continue;   /* the warm-up's */
                size_t lo = 0, hi = n_sent[r->gauge];
                const flip *v = sent[r->gauge];
                while (lo < hi) {
                        size_t mid = (lo + hi) / 2;
                        if (v[mid].ts_ms < r->ts_ms)
                                lo = mid + 1;
                        else
                                hi = mid;
                }
                if (lo < n_sent[r->gauge] && v[lo].ts_ms == r->ts_ms && !v[lo].timed) {
                        continue;   /* sent during the warm-up */
                } else if (lo < n_sent[r->gauge] && v[lo].ts_ms == r->ts_ms) {
                        lat[matched++] = (r->t_recv - v[lo].t_sent) * 1000.0;
                        raised += r->raised;
                        fprintf(tsv, "%.4f\t%.3f\t%d\t%d\n", v[lo].t_sent - phase0, lat[matched - 1], r->gauge,
                                r->raised);
                } else
                        unmatched++;
        }
        fclose(tsv);
        free(tsv_path);
        qsort(lat, matched, sizeof(*lat), cmp_double);
        printf("latency.%s.path %s\n", rn, run->kafka_only ? "producer->kafka->consumer" :
                                                             "producer->kafka->daemon->kafka->consumer");
        printf("latency.%s.producer_linger_ms %s\n", rn, run->linger);
        if (!run->kafka_only)
                printf("latency.%s.daemon_producer_linger_ms %s\n", rn,
                       run->daemon_linger ? run->daemon_linger : "shipped");
        printf("latency.%s.rate_per_s %.0f\n", rn, (double) total / phase_s);
        printf("latency.%s.readings %zu\n", rn, total);
        printf("latency.%s.probes %zu\n", rn, flips);
        printf("latency.%s.matched %zu\n", rn, matched);
        printf("latency.%s.matched_raised %zu\n", rn, raised);
        printf("latency.%s.unmatched %zu\n", rn, unmatched);
        printf("latency.%s.producer_lag_max_ms %.1f\n", rn, lag_max);
        printf("latency.%s.producer_queued_at_end %d\n", rn, queued_at_end);
        printf("latency.%s.p50_ms %.2f\n", rn, pct(lat, matched, 50));
        printf("latency.%s.p90_ms %.2f\n", rn, pct(lat, matched, 90));
        printf("latency.%s.p99_ms %.2f\n", rn, pct(lat, matched, 99));
        printf("latency.%s.p999_ms %.2f\n", rn, pct(lat, matched, 99.9));
        printf("latency.%s.max_ms %.2f\n", rn, matched ? lat[matched - 1] : NAN);
        if (!run->kafka_only)
                printf("latency.%s.daemon_cpu_s %.3f\n", rn, cpu);
        /* Other work on the machine shows in the tail: say how busy it was. */
        FILE *la = fopen("/proc/loadavg", "re");
        double l1 = NAN;
        if (la) {
                if (fscanf(la, "%lf", &l1) != 1)
                        l1 = NAN;
                fclose(la);
        }
        printf("latency.%s.loadavg_1m %.2f\n", rn, l1);

        rd_kafka_destroy(prod);
        rd_kafka_consumer_close(lc.consumer);
        rd_kafka_destroy(lc.consumer);
        for (int g = 0; g < FLIP_GAUGES; g++)
                free(sent[g]);
        free(sent);
        free(n_sent);
        free(gauge_last);
        free(gauge_high);
        free(lat);
        free(lc.rx);
        free(lc.gauge_of_station);
        free(rain);
        free(path);
        free(rules);
        free(cfgpath);
        fh_buf_free(&cfg);
        fh_buf_free(&line);
}

/* ---- soak ---- */

/* One look at the daemon every 10 s: its resident memory from /proc and
 * what it last wrote to its metrics file (rewritten every stats_interval,
 * so the figures there are up to that old). */
typedef struct soak_sample {
        double t;                      /* seconds since production started */
        long long rss_kib, hwm_kib;
        unsigned long long produced;
        long long consumed, accepted, lag, behind_s, in_flight, alerts, future;
        double load1;
} soak_sample;

typedef struct soak_ctx {
        const opts *o;
        rd_kafka_t *rk;
        const fh_registry *reg;
        char **topic_of_kind;
        child *daemon;
        const char *metrics;
        fh_buf line;
        unsigned long long n, limit;
        double t0, next_sample, lag_max_s;
        soak_sample *samples;
        size_t n_samples, cap_samples;
} soak_ctx;

static long long status_kib(pid_t pid, const char *key) {
        char path[64], buf[256];
        long long v = -1;
        size_t kl = strlen(key);
        snprintf(path, sizeof(path), "/proc/%d/status", (int) pid);
        FILE *f = fopen(path, "re");
        while (f && fgets(buf, sizeof(buf), f))
                if (!strncmp(buf, key, kl) && buf[kl] == ':') {
                        v = atoll(buf + kl + 1);
                        break;
                }
        if (f)
                fclose(f);
        return v;
}

static double loadavg_1m(void) {
        FILE *la = fopen("/proc/loadavg", "re");
        double l1 = NAN;
        if (la) {
                if (fscanf(la, "%lf", &l1) != 1)
                        l1 = NAN;
                fclose(la);
        }
        return l1;
}

static void soak_sample_now(soak_ctx *sc) {
        soak_sample s = { .t = mono_s() - sc->t0, .produced = sc->n, .consumed = -1, .accepted = -1,
                          .lag = -1, .behind_s = -1, .in_flight = -1, .alerts = 0, .future = -1 };
        char buf[512], name[256];
        long long v;

        child_pump(sc->daemon);
        if (!child_alive(sc->daemon))
                die("the daemon exited during the soak; see its log");
        s.rss_kib = status_kib(sc->daemon->pid, "VmRSS");
        s.hwm_kib = status_kib(sc->daemon->pid, "VmHWM");
        s.load1 = loadavg_1m();
        FILE *f = fopen(sc->metrics, "re");
        while (f && fgets(buf, sizeof(buf), f)) {
                if (sscanf(buf, "%255s %lld", name, &v) != 2)
                        continue;
                if (!strcmp(name, "fenghuo_readings_consumed_total"))
                        s.consumed = v;
                else if (!strcmp(name, "fenghuo_readings_accepted_total"))
                        s.accepted = v;
                else if (!strcmp(name, "fenghuo_consumer_lag_messages"))
                        s.lag = v;
                else if (!strcmp(name, "fenghuo_input_behind_seconds"))
                        s.behind_s = v;
                else if (!strcmp(name, "fenghuo_alerts_in_flight"))
                        s.in_flight = v;
                else if (!strncmp(name, "fenghuo_alerts_total{", 21))
                        s.alerts += v;
                else if (!strcmp(name, "fenghuo_readings_rejected_total{reason=\"future_timestamp\"}"))
                        s.future = v;
        }
        if (f)
                fclose(f);
        if (sc->n_samples == sc->cap_samples) {
                sc->cap_samples = sc->cap_samples ? 2 * sc->cap_samples : 128;
                sc->samples = fh_realloc(sc->samples, sc->cap_samples * sizeof(*sc->samples));
        }
        sc->samples[sc->n_samples++] = s;
        note("soak +%4.0fs: rss %lld MiB, produced %llu, accepted %lld, lag %lld, behind %lld s, alerts %lld, "
             "load %.2f", s.t, s.rss_kib / 1024, s.produced, s.accepted, s.lag, s.behind_s, s.alerts, s.load1);
}

/* Each simulated line, its timestamp replaced by the wall clock, produced
 * on a steady schedule: reading k is due at t0 + k / rate. */
static int on_soak_line(void *userdata, const char *line, size_t len) {
        soak_ctx *sc = userdata;
        static const char prefix[] = "{\"sensor\":\"", tskey[] = "\"ts\":\"";

        if (sc->n >= sc->limit)
                return 1;
        if ((sc->n % 20) == 0) {
                double due = sc->t0 + (double) sc->n / sc->o->rate, now = mono_s();
                if (due > now) {
                        struct timespec ts = { (time_t) (due - now), 0 };
                        ts.tv_nsec = (long) ((due - now - (double) ts.tv_sec) * 1e9);
                        nanosleep(&ts, NULL);
                } else if (now - due > sc->lag_max_s)
                        sc->lag_max_s = now - due;
                rd_kafka_poll(sc->rk, 0);
                if (mono_s() >= sc->next_sample) {
                        soak_sample_now(sc);
                        sc->next_sample += 10;
                }
        }
        if (len < sizeof(prefix) || memcmp(line, prefix, sizeof(prefix) - 1) != 0)
                die("unexpected line from the simulator: %.*s", (int) len, line);
        const char *id = line + sizeof(prefix) - 1;
        const char *q = memchr(id, '"', len - (sizeof(prefix) - 1));
        const fh_station *st = q ? fh_registry_find(sc->reg, id, (size_t) (q - id)) : NULL;
        if (!st)
                die("simulated sensor not in the registry: %.*s", (int) len, line);
        const char *tsp = memmem(line, len, tskey, sizeof(tskey) - 1);
        const char *tse = tsp ? memchr(tsp + sizeof(tskey) - 1, '"', len - (size_t) (tsp - line) - (sizeof(tskey) - 1))
                              : NULL;
        if (!tse)
                die("no \"ts\" string in the simulated line: %.*s", (int) len, line);
        fh_buf_reset(&sc->line);
        fh_buf_printf(&sc->line, "%.*s\"ts\":%lld%.*s", (int) (tsp - line), line, (long long) wall_ms(),
                      (int) (len - (size_t) (tse + 1 - line)), tse + 1);
        produce(sc->rk, sc->topic_of_kind[st->kind], id, (size_t) (q - id), sc->line.data, sc->line.len);
        sc->n++;
        return 0;
}

static const soak_sample *sample_at(const soak_ctx *sc, double t) {
        for (size_t i = 0; i < sc->n_samples; i++)
                if (sc->samples[i].t >= t - 1)
                        return &sc->samples[i];
        return NULL;
}

static void soak(const opts *o, const fh_registry *reg) {
        static const char *const kinds[FH_KIND__MAX] = { "rain", "water_level", "landslide", "bridge" };
        char *topics[FH_KIND__MAX + 1];
        char alerts[128], group[128];
        fh_buf cfg = FH_BUF_NULL;
        child c;

        if (reg->n_stations == 0)
                die("the soak needs stations");
        for (int k = 0; k < FH_KIND__MAX; k++)
                if (asprintf(&topics[k], "soak-%s-%s", o->tag, kinds[k]) < 0)
                        fh_oom();
        snprintf(alerts, sizeof(alerts), "soak-%s-alerts", o->tag);
        snprintf(group, sizeof(group), "soak-%s", o->tag);
        topics[FH_KIND__MAX] = alerts;
        create_topics(o->brokers, topics, FH_KIND__MAX + 1);

        char *metrics = path_join(o->workdir, "soak-metrics.prom");
        char *cfgpath = path_join(o->workdir, "soak.yaml");
        char *logpath = path_join(o->workdir, "daemon-soak.log");
        unlink(metrics);
        fh_buf_printf(&cfg, "rules: %s\nstations: %s\nstdout: false\nstats_interval: 10s\nlog_level: info\n"
                      "metrics_file: %s\nkafka:\n  brokers: \"%s\"\n  group_id: %s\n  alerts_topic: %s\n  topics:\n",
                      o->rules, o->stations, metrics, o->brokers, group, alerts);
        for (int k = 0; k < FH_KIND__MAX; k++)
                fh_buf_printf(&cfg, "    %s: %s\n", kinds[k], topics[k]);
        /* Each sensor keeps its timestamps within lateness (duplicate
         * detection): at 5-s reporting the default hour is 720 of them. */
        if (o->lateness)
                fh_buf_printf(&cfg, "lateness: %s\n", o->lateness);
        if (o->shards >= 0)
                fh_buf_printf(&cfg, "shards: %d\n", o->shards);
        write_file(cfgpath, cfg.data);
        char *argv[] = { (char *) o->fenghuo, "run", "--config", cfgpath, NULL };
        spawn(&c, argv, logpath);
        /* Let it load the registry and join the group: its first metrics
         * file says it is running. */
        double deadline = mono_s() + 120;
        while (access(metrics, R_OK) != 0) {
                child_pump(&c);
                if (!child_alive(&c))
                        die("the daemon exited; see %s", logpath);
                if (mono_s() > deadline)
                        die("no metrics file from the daemon after 120 s; see %s", logpath);
                usleep(100000);
        }
        long long rss_idle = status_kib(c.pid, "VmRSS");

        rd_kafka_conf_t *conf = rd_kafka_conf_new();
        set(conf, "bootstrap.servers", o->brokers);
        rd_kafka_conf_set_dr_msg_cb(conf, dr_cb);
        rd_kafka_t *prod = client(RD_KAFKA_PRODUCER, conf);
        soak_ctx sc = { .o = o, .rk = prod, .reg = reg, .topic_of_kind = topics, .daemon = &c, .metrics = metrics,
                        .line = FH_BUF_NULL };
        sc.limit = (unsigned long long) llround(o->rate * o->soak_s);
        /* Every station once per step, stations in id order: the step is
         * how long one round takes at the rate. */
        fh_sim_options so = { .seed = 1, .tz_offset_min = 480, .storm_scale = 1.0 };
        so.step_ms = (int64_t) llround((double) reg->n_stations * 1000.0 / o->rate);
        if (so.step_ms < 1)
                so.step_ms = 1;
        so.start_ms = wall_ms();
        so.duration_ms = (int64_t) ((sc.limit / reg->n_stations + 2) * (unsigned long long) so.step_ms);
        note("soak: %llu readings at %.0f/s over %zu stations (each every %.1f s) for %.0f s; daemon rss %lld MiB "
             "before the first reading", sc.limit, o->rate, reg->n_stations, (double) so.step_ms / 1000.0, o->soak_s,
             rss_idle / 1024);
        printf("soak.lateness %s\n", o->lateness ? o->lateness : "default");
        printf("soak.rate_per_s %.0f\nsoak.seconds %.0f\nsoak.station_interval_s %.1f\nsoak.rss_idle_kib %lld\n",
               o->rate, o->soak_s, (double) so.step_ms / 1000.0, rss_idle);
        sc.t0 = mono_s();
        sc.next_sample = sc.t0;
        int r = fh_simulate(reg, &so, on_soak_line, &sc);
        if (r < 0)
                die("simulate: %s", strerror(-r));
        double t_end = mono_s() - sc.t0;
        while (rd_kafka_flush(prod, 1000) == RD_KAFKA_RESP_ERR__TIMED_OUT)
                ;
        /* The end: two more stats intervals, so the last metrics file
         * has seen everything that was produced. */
        while (mono_s() < sc.t0 + t_end + 25) {
                child_pump(&c);
                usleep(100000);
                if (mono_s() >= sc.next_sample) {
                        soak_sample_now(&sc);
                        sc.next_sample += 10;
                }
        }
        soak_sample_now(&sc);
        double cpu = child_cpu_s(c.pid);
        child_stop(&c);

        puts("soak.samples t_s rss_mib hwm_mib produced consumed accepted lag behind_s alerts in_flight load1");
        for (size_t i = 0; i < sc.n_samples; i++) {
                const soak_sample *s = &sc.samples[i];
                printf("soak.sample %.0f %.1f %.1f %llu %lld %lld %lld %lld %lld %lld %.2f\n", s->t,
                       (double) s->rss_kib / 1024.0, (double) s->hwm_kib / 1024.0, s->produced, s->consumed,
                       s->accepted, s->lag, s->behind_s, s->alerts, s->in_flight, s->load1);
        }
        /* Least squares over the last five minutes of production. */
        double sx = 0, sy = 0, sxx = 0, sxy = 0, n = 0;
        long long lag_max = 0, behind_max = 0, lag_end = -1;
        for (size_t i = 0; i < sc.n_samples; i++) {
                const soak_sample *s = &sc.samples[i];
                if (s->t <= t_end + 1) {
                        if (s->lag > lag_max)
                                lag_max = s->lag;
                        if (s->behind_s > behind_max)
                                behind_max = s->behind_s;
                        lag_end = s->lag;
                }
                if (s->t <= t_end + 1 && s->t >= t_end - 300) {
                        double x = s->t / 60.0, y = (double) s->rss_kib / 1024.0;
                        sx += x, sy += y, sxx += x * x, sxy += x * y, n++;
                }
        }
        double slope = n > 2 ? (n * sxy - sx * sy) / (n * sxx - sx * sx) : NAN;
        const double marks[] = { 60, 300, 600 };
        for (size_t i = 0; i < FH_ARRAY_SIZE(marks); i++) {
                const soak_sample *s = sample_at(&sc, marks[i]);
                if (s && s->t <= t_end + 1)
                        printf("soak.rss_mib_at_%.0fs %.1f\n", marks[i], (double) s->rss_kib / 1024.0);
        }
        const soak_sample *last = &sc.samples[sc.n_samples - 1];
        printf("soak.rss_mib_end %.1f\n", (double) last->rss_kib / 1024.0);
        printf("soak.rss_hwm_mib %.1f\n", (double) last->hwm_kib / 1024.0);
        printf("soak.rss_slope_last_5min_mib_per_min %.2f\n", slope);
        printf("soak.produce_s %.1f\n", t_end);
        printf("soak.produced %llu\n", sc.n);
        printf("soak.producer_behind_max_s %.3f\n", sc.lag_max_s);
        printf("soak.lag_max %lld\n", lag_max);
        printf("soak.lag_end_of_production %lld\n", lag_end);
        printf("soak.behind_s_max %lld\n", behind_max);
        printf("soak.lag_after_drain %lld\n", last->lag);
        printf("soak.consumed %lld\n", last->consumed);
        printf("soak.accepted %lld\n", last->accepted);
        printf("soak.future_rejected %lld\n", last->future);
        printf("soak.alerts %lld\n", last->alerts);
        printf("soak.daemon_cpu_s %.1f\n", cpu);
        printf("soak.loadavg_1m_end %.2f\n", last->load1);

        rd_kafka_destroy(prod);
        for (int k = 0; k < FH_KIND__MAX; k++)
                free(topics[k]);
        free(sc.samples);
        fh_buf_free(&sc.line);
        fh_buf_free(&cfg);
        free(metrics);
        free(cfgpath);
        free(logpath);
}

static void usage(FILE *f) {
        fputs("usage: bench_daemon --brokers HOST:PORT --fenghuo PATH --rules DIR --stations FILE\n"
              "                    --workdir DIR [--readings N] [--variant NAME:PROPS]...\n"
              "                    [--daemon NAME:SHARDS[:FENGHUO]]... [--rate PER_S] [--seconds S]\n"
              "                    [--latency-run NAME:LINGER:DAEMON_LINGER[:SHARDS[:FENGHUO]]]...\n"
              "                    [--skip-throughput] [--skip-latency] [--shards N|-] [--broker-pid PID]\n"
              "       bench_daemon --soak SECONDS --rate PER_S --brokers .. --fenghuo .. --rules DIR\n"
              "                    --stations FILE --workdir DIR [--lateness DURATION] [--shards N|-]\n"
              "Throughput of `fenghuo run` from Kafka against a plain consumer, and the\n"
              "latency from produce to alert at a steady rate. RULES must not use age().\n"
              "Defaults: --variant shipped: --daemon daemon:SHARDS --latency-run shipped:5:-\n"
              "SHARDS: the `shards:` written into the daemon's configuration; - (the\n"
              "default of --shards) writes none, for a daemon from before shards.\n"
              "--broker-pid: the broker's CPU seconds during each throughput run too.\n"
              "--soak: only the soak, readings at a steady rate with wall-clock timestamps\n"
              "(RULES may use age() then), the daemon's memory and lag every 10 s.\n", f);
}

static bool is_name(const char *s, size_t n) {
        if (n == 0 || n > 32)
                return false;
        for (size_t i = 0; i < n; i++)
                if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '_'))
                        return false;
        return true;
}

static void add_variant(opts *o, const char *arg) {
        const char *colon = strchr(arg, ':');
        if (!colon || !is_name(arg, (size_t) (colon - arg)) || o->n_variants == RUNS_MAX)
                die("--variant wants NAME:PROPS (name of [a-z0-9_], props k=v,k=v or empty), got '%s'", arg);
        o->variants[o->n_variants++] = (variant) { fh_strndup(arg, (size_t) (colon - arg)), colon + 1 };
}

/* "-" or a count of shards; -2 when it is neither. */
static int parse_shards(const char *s) {
        char *end;
        if (!strcmp(s, "-"))
                return -1;
        errno = 0;
        long n = strtol(s, &end, 10);
        return errno || end == s || *end || n < 0 || n > 1024 ? -2 : (int) n;
}

static void add_daemon(opts *o, const char *arg) {
        char *copy = fh_strdup(arg);
        char *c1 = strchr(copy, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
        if (c1)
                *c1 = 0;
        if (c2)
                *c2 = 0;
        int shards = c1 ? parse_shards(c1 + 1) : -2;
        if (!c1 || !is_name(copy, strlen(copy)) || shards == -2 || (c2 && !c2[1]) || o->n_daemons == RUNS_MAX)
                die("--daemon wants NAME:SHARDS[:FENGHUO] (SHARDS a count or -: no `shards:` key), got '%s'", arg);
        o->daemons[o->n_daemons++] = (daemon_spec) { copy, shards, c2 ? c2 + 1 : NULL };
}

static void add_run(opts *o, const char *arg) {
        char *copy = fh_strdup(arg), *save = NULL;
        char *n = strtok_r(copy, ":", &save), *l = strtok_r(NULL, ":", &save), *d = strtok_r(NULL, ":", &save);
        char *sh = strtok_r(NULL, ":", &save), *bin = strtok_r(NULL, "", &save);
        int shards = sh ? parse_shards(sh) : SHARDS_OF_OPTS;
        if (!n || !l || !d || !is_name(n, strlen(n)) || shards == -2 || o->n_runs == RUNS_MAX)
                die("--latency-run wants NAME:LINGER:DAEMON_LINGER[:SHARDS[:FENGHUO]] (DAEMON_LINGER a number, - or "
                    "kafka; SHARDS a count or -), got '%s'", arg);
        lat_run r = { .name = n, .linger = l, .shards = shards, .fenghuo = bin };
        if (!strcmp(d, "kafka"))
                r.kafka_only = true;
        else if (strcmp(d, "-") != 0)
                r.daemon_linger = d;
        o->runs[o->n_runs++] = r;
}

int main(int argc, char **argv) {
        static const struct option lo[] = {
                { "brokers", required_argument, NULL, 'b' },
                { "fenghuo", required_argument, NULL, 'f' },
                { "rules", required_argument, NULL, 'r' },
                { "stations", required_argument, NULL, 's' },
                { "workdir", required_argument, NULL, 'w' },
                { "readings", required_argument, NULL, 'n' },
                { "variant", required_argument, NULL, 'V' },
                { "rate", required_argument, NULL, 'R' },
                { "seconds", required_argument, NULL, 'S' },
                { "latency-run", required_argument, NULL, 'l' },
                { "skip-throughput", no_argument, NULL, 'T' },
                { "skip-latency", no_argument, NULL, 'L' },
                { "soak", required_argument, NULL, 'K' },
                { "lateness", required_argument, NULL, 'A' },
                { "shards", required_argument, NULL, 'H' },
                { "daemon", required_argument, NULL, 'D' },
                { "broker-pid", required_argument, NULL, 'P' },
                { "help", no_argument, NULL, 'h' },
                {}
        };
        opts o = { .readings = 2000000, .rate = 10000, .seconds = 20, .self = argv[0], .shards = -1 };
        fh_registry *reg = NULL;
        fh_diags diags = FH_DIAGS_NULL;
        int c;

        if (argc > 1 && !strcmp(argv[1], "drain"))
                return cmd_drain(argc, argv);
        signal(SIGINT, on_fatal_signal);
        signal(SIGTERM, on_fatal_signal);
        signal(SIGHUP, on_fatal_signal);
        while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1)
                switch (c) {
                case 'b': o.brokers = optarg; break;
                case 'f': o.fenghuo = optarg; break;
                case 'r': o.rules = optarg; break;
                case 's': o.stations = optarg; break;
                case 'w': o.workdir = optarg; break;
                case 'n': o.readings = strtoull(optarg, NULL, 10); break;
                case 'V': add_variant(&o, optarg); break;
                case 'R': o.rate = atof(optarg); break;
                case 'S': o.seconds = atof(optarg); break;
                case 'l': add_run(&o, optarg); break;
                case 'T': o.skip_throughput = true; break;
                case 'L': o.skip_latency = true; break;
                case 'K': o.soak_s = atof(optarg); break;
                case 'A': o.lateness = optarg; break;
                case 'H':
                        o.shards = parse_shards(optarg);
                        if (o.shards == -2)
                                die("--shards wants a count (0: one per CPU) or -, got '%s'", optarg);
                        break;
                case 'D': add_daemon(&o, optarg); break;
                case 'P': o.broker_pid = (pid_t) atoi(optarg); break;
                case 'h': usage(stdout); return 0;
                default: usage(stderr); return 2;
                }
        if (!o.brokers || !o.fenghuo || !o.rules || !o.stations || !o.workdir || optind != argc ||
            o.readings == 0 || !(o.rate >= 1) || !(o.seconds > 0) || !(o.soak_s >= 0)) {
                usage(stderr);
                return 2;
        }
        if (o.n_variants == 0)
                add_variant(&o, "shipped:");
        if (o.n_runs == 0)
                add_run(&o, "shipped:5:-");
        if (o.n_daemons == 0)
                o.daemons[o.n_daemons++] = (daemon_spec) { "daemon", o.shards, NULL };
        /* The drain process is this program again; find it by absolute path. */
        static char self[4096];
        ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
        if (n > 0) {
                self[n] = 0;
                o.self = self;
        }
        snprintf(o.tag, sizeof(o.tag), "%lld-%d", (long long) (wall_ms() / 1000), (int) getpid());
        if (fh_load_registry(o.stations, &reg, &diags) < 0) {
                fh_print_diags(&diags);
                return 1;
        }
        fh_diags_clear(&diags);
        setvbuf(stdout, NULL, _IOLBF, 0);
        printf("stations %zu\n", reg->n_stations);
        printf("librdkafka %s\n", rd_kafka_version_str());
        if (o.soak_s > 0) {
                soak(&o, reg);
                fh_registry_free(reg);
                return 0;
        }
        if (!o.skip_throughput)
                throughput(&o, reg);
        if (!o.skip_latency)
                for (size_t i = 0; i < o.n_runs; i++)
                        latency(&o, reg, &o.runs[i]);
        fh_registry_free(reg);
        return 0;
}
