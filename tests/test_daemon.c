/* Integration: `fenghuo run` against a real Kafka broker and a real
 * redis-server (tests/integration/kafka.sh and redis.sh), judged against
 * `fenghuo replay` of the same input.
 *
 * One broker and one redis-server serve the whole group; every test has its
 * own topics, consumer group, Redis keys and state directory. Readings are
 * produced keyed by sensor to the topic of the sensor's kind (lines without
 * a known sensor go to the rain topic), so each sensor's readings reach the
 * daemon in file order, as they reach replay: per sensor, the daemon's
 * alerts must be replay's alerts. The rules are the bundled ones without
 * age() rules: in the daemon those tick on wall time, in replay on the
 * data's time, so they legitimately differ on 2023 data.
 *
 * Nothing waits on a fixed sleep: every wait polls for the expected state
 * and fails with the daemon's log when its deadline passes.
 *
 * FENGHUO (the binary) and SRCDIR (the source tree) come from meson. Needs
 * java, kcat, redis-server and redis-cli (see tests/integration/README.md);
 * without them every test is skipped. FENGHUO_TEST_KEEP=1 keeps the
 * temporary directory (logs, configs, inputs) for a post-mortem;
 * FENGHUO_TEST_FILTER=pattern runs only the matching tests (cmocka's
 * wildcards). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>
#include <librdkafka/rdkafka.h>
#include <cmocka.h>

extern char **environ;

#define N_KINDS 4
static const char *const kind_names[N_KINDS] = { "rain", "water_level", "landslide", "bridge" };

/* 2023-07-30T00:00:00+08:00 */
#define T0_MS 1690646400000LL
#define MIN_MS 60000LL

static const char *bin, *src;
static char tmpdir[256], kafka_dir[320], redis_dir[320], rules_dir[320], stations[512];
static char bootstrap[128];
static int redis_port;
static bool servers_up;
static char unavailable[256];
static rd_kafka_t *producer;
static int delivery_errors;
static double test_started;

typedef struct station {
        char id[72];
        int kind;
} station;
static station reg[512];
static size_t n_reg;

/* Daemons alive right now, killed by the teardown if a test fails; and
 * the readers' Kafka handles, which a failed test leaves open. */
static pid_t live[8];
static rd_kafka_t *open_rk[8];

static void rk_track(rd_kafka_t *rk, bool add) {
        for (size_t i = 0; i < sizeof(open_rk) / sizeof(open_rk[0]); i++)
                if (open_rk[i] == (add ? NULL : rk)) {
                        open_rk[i] = add ? rk : NULL;
                        return;
                }
}

/* ---- small utilities ---- */

static double now_s(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}

static void nap_ms(long ms) {
        struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
                ;
}

static char *slurp(const char *path, size_t *ret_len) {
        FILE *f = fopen(path, "re");
        char *p = NULL;
        size_t n = 0, cap = 0;

        if (!f) {
                if (ret_len)
                        *ret_len = 0;
                return strdup("");
        }
        for (;;) {
                if (cap - n < 65536) {
                        cap = cap ? cap * 2 : 1 << 16;
                        p = realloc(p, cap + 1);
                        assert_non_null(p);
                }
                size_t k = fread(p + n, 1, cap - n, f);
                n += k;
                if (k == 0)
                        break;
        }
        fclose(f);
        p[n] = 0;
        if (ret_len)
                *ret_len = n;
        return p;
}

static void write_file(const char *path, const char *text) {
        char tmp[700];
        FILE *f;

        /* Through a rename, so a reload never reads half a file. */
        snprintf(tmp, sizeof(tmp), "%s.tmp", path);
        f = fopen(tmp, "we");
        assert_non_null(f);
        fputs(text, f);
        assert_int_equal(fclose(f), 0);
        assert_int_equal(rename(tmp, path), 0);
}

static size_t count_substr(const char *hay, const char *needle) {
        size_t n = 0;
        for (const char *p = strstr(hay, needle); p; p = strstr(p + 1, needle))
                n++;
        return n;
}

/* The first "name":"value" string member; ids and names never hold
 * escapes, and the top-level members come before any free text. */
static void json_str(const char *json, const char *name, char *out, size_t n) {
        char key[64];
        const char *p;
        size_t i = 0;

        snprintf(key, sizeof(key), "\"%s\":\"", name);
        out[0] = 0;
        p = strstr(json, key);
        if (!p)
                return;
        p += strlen(key);
        while (p[i] && p[i] != '"' && i + 1 < n)
                i++;
        memcpy(out, p, i);
        out[i] = 0;
}

/* Runs argv with stdout to out_path (or /dev/null) and stderr to err_path
 * (or inherited); returns the exit code. */
static int run(const char *const *argv, const char *out_path, const char *err_path) {
        posix_spawn_file_actions_t fa;
        pid_t pid;
        int st;

        posix_spawn_file_actions_init(&fa);
        posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
        posix_spawn_file_actions_addopen(&fa, 1, out_path ? out_path : "/dev/null", O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (err_path)
                posix_spawn_file_actions_addopen(&fa, 2, err_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        assert_int_equal(posix_spawn(&pid, argv[0], &fa, NULL, (char *const *) argv, environ), 0);
        posix_spawn_file_actions_destroy(&fa);
        while (waitpid(pid, &st, 0) < 0)
                assert_int_equal(errno, EINTR);
        return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* Runs one of the server scripts; its one line of stdout goes to out. */
static int script(const char *name, const char *cmd, const char *dir, char *out, size_t n) {
        char line[1024];
        FILE *p;

        snprintf(line, sizeof(line), "bash '%s/tests/integration/%s' %s '%s'", src, name, cmd, dir);
        p = popen(line, "re");
        if (!p)
                return -1;
        if (out) {
                out[0] = 0;
                if (fgets(out, (int) n, p))
                        out[strcspn(out, "\r\n")] = 0;
        }
        while (fgets(line, sizeof(line), p))
                ;
        int st = pclose(p);
        return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* ---- string lists ---- */

typedef struct strs {
        char **v;
        size_t n, cap;
} strs;

static void strs_add(strs *s, const char *p, size_t len) {
        if (s->n == s->cap) {
                s->cap = s->cap ? s->cap * 2 : 256;
                s->v = realloc(s->v, s->cap * sizeof(*s->v));
                assert_non_null(s->v);
        }
        s->v[s->n] = malloc(len + 1);
        assert_non_null(s->v[s->n]);
        memcpy(s->v[s->n], p, len);
        s->v[s->n][len] = 0;
        s->n++;
}

static void strs_free(strs *s) {
        for (size_t i = 0; i < s->n; i++)
                free(s->v[i]);
        free(s->v);
        *s = (strs) { 0 };
}

static strs strs_lines(const char *text) {
        strs s = { 0 };
        for (const char *p = text; *p;) {
                const char *nl = strchr(p, '\n');
                size_t len = nl ? (size_t) (nl - p) : strlen(p);
                if (len)
                        strs_add(&s, p, len);
                p += len + (nl ? 1 : 0);
        }
        return s;
}

/* ---- comparing alert lists per sensor ---- */

typedef struct keyed {
        const char *json;
        char sensor[80];
        size_t idx;
} keyed;

static int keyed_cmp(const void *a, const void *b) {
        const keyed *x = a, *y = b;
        int c = strcmp(x->sensor, y->sensor);
        if (c)
                return c;
        return x->idx < y->idx ? -1 : x->idx > y->idx;
}

static keyed *by_sensor(char *const *v, size_t n) {
        keyed *k = calloc(n ? n : 1, sizeof(*k));
        assert_non_null(k);
        for (size_t i = 0; i < n; i++) {
                k[i].json = v[i];
                k[i].idx = i;
                json_str(v[i], "sensor", k[i].sensor, sizeof(k[i].sensor));
        }
        qsort(k, n, sizeof(*k), keyed_cmp);
        return k;
}

/* Per sensor, the same alerts in the same order: the whole event, so
 * event, level, previous, ts, value and alert_id all take part. */
static void assert_same_per_sensor(const char *what, char *const *want, size_t nw, char *const *got, size_t ng) {
        keyed *a = by_sensor(want, nw), *b = by_sensor(got, ng);
        size_t n = nw < ng ? nw : ng;

        for (size_t i = 0; i < n; i++) {
                if (strcmp(a[i].sensor, b[i].sensor) || strcmp(a[i].json, b[i].json)) {
                        fprintf(stderr, "%s: per-sensor alert %zu differs (%zu expected, %zu got)\n  want: %s\n  got:  %s\n",
                                what, i, nw, ng, a[i].json, b[i].json);
                        free(a);
                        free(b);
                        fail();
                }
        }
        if (nw != ng) {
                fprintf(stderr, "%s: %zu alerts expected, %zu got; first extra/missing: %s\n", what, nw, ng,
                        nw > ng ? a[n].json : b[n].json);
                free(a);
                free(b);
                fail();
        }
        free(a);
        free(b);
}

/* The active set after alerts[from..n): "rule:sensor" -> JSON of the pair's
 * last event, for the pairs whose last event is not `cleared`. */
typedef struct active {
        strs field, json;
        bool *cleared;
} active;

static active active_after(char *const *v, size_t n, size_t from) {
        active a = { 0 };
        a.cleared = calloc(n + 1, sizeof(bool));
        for (size_t i = from; i < n; i++) {
                char rule[80], sensor[80], ev[32], f[170];
                size_t j;
                json_str(v[i], "rule", rule, sizeof(rule));
                json_str(v[i], "sensor", sensor, sizeof(sensor));
                json_str(v[i], "event", ev, sizeof(ev));
                snprintf(f, sizeof(f), "%s:%s", rule, sensor);
                for (j = 0; j < a.field.n; j++)
                        if (!strcmp(a.field.v[j], f))
                                break;
                if (j == a.field.n) {
                        strs_add(&a.field, f, strlen(f));
                        strs_add(&a.json, v[i], strlen(v[i]));
                } else {
                        free(a.json.v[j]);
                        a.json.v[j] = strdup(v[i]);
                }
                a.cleared[j] = !strcmp(ev, "cleared");
        }
        return a;
}

static const char *active_get(const active *a, const char *field) {
        for (size_t j = 0; j < a->field.n; j++)
                if (!strcmp(a->field.v[j], field))
                        return a->cleared[j] ? NULL : a->json.v[j];
        return NULL;
}

static size_t active_count(const active *a) {
        size_t n = 0;
        for (size_t j = 0; j < a->field.n; j++)
                n += !a->cleared[j];
        return n;
}

static void active_free(active *a) {
        strs_free(&a->field);
        strs_free(&a->json);
        free(a->cleared);
}

/* ---- Redis (hiredis, synchronous) ---- */

static redisContext *redis_open(void) {
        struct timeval tv = { 5, 0 };
        redisContext *c = redisConnectWithTimeout("127.0.0.1", redis_port, tv);
        if (c && c->err) {
                redisFree(c);
                return NULL;
        }
        return c;
}

/* -1 when Redis does not answer. */
static long long redis_xlen(const char *stream) {
        redisContext *c = redis_open();
        long long n = -1;

        if (!c)
                return -1;
        redisReply *r = redisCommand(c, "XLEN %s", stream);
        if (r && r->type == REDIS_REPLY_INTEGER)
                n = r->integer;
        freeReplyObject(r);
        redisFree(c);
        return n;
}

/* Every entry's `alert` field, oldest first; each entry must hold exactly
 * that one field. */
static strs redis_stream(const char *stream) {
        redisContext *c = redis_open();
        strs s = { 0 };

        assert_non_null(c);
        redisReply *r = redisCommand(c, "XRANGE %s - +", stream);
        assert_non_null(r);
        assert_int_equal(r->type, REDIS_REPLY_ARRAY);
        for (size_t i = 0; i < r->elements; i++) {
                redisReply *e = r->element[i];
                assert_int_equal(e->type, REDIS_REPLY_ARRAY);
                assert_int_equal(e->elements, 2);
                redisReply *kv = e->element[1];
                assert_int_equal(kv->type, REDIS_REPLY_ARRAY);
                assert_int_equal(kv->elements, 2);
                assert_string_equal(kv->element[0]->str, "alert");
                strs_add(&s, kv->element[1]->str, kv->element[1]->len);
        }
        freeReplyObject(r);
        redisFree(c);
        return s;
}

static void redis_hash(const char *hash, strs *fields, strs *values) {
        redisContext *c = redis_open();

        assert_non_null(c);
        redisReply *r = redisCommand(c, "HGETALL %s", hash);
        assert_non_null(r);
        assert_int_equal(r->type, REDIS_REPLY_ARRAY);
        for (size_t i = 0; i + 1 < r->elements; i += 2) {
                strs_add(fields, r->element[i]->str, r->element[i]->len);
                strs_add(values, r->element[i + 1]->str, r->element[i + 1]->len);
        }
        freeReplyObject(r);
        redisFree(c);
}

/* ---- Kafka ---- */

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
        if (m->err) {
                fprintf(stderr, "test producer: delivery failed: %s\n", rd_kafka_err2str(m->err));
                delivery_errors++;
        }
}

static void conf_set(rd_kafka_conf_t *conf, const char *k, const char *v) {
        char err[512];
        if (rd_kafka_conf_set(conf, k, v, err, sizeof(err)) != RD_KAFKA_CONF_OK) {
                fprintf(stderr, "%s=%s: %s\n", k, v, err);
                fail();
        }
}

static int partitions_ready(rd_kafka_t *rk, const char *topic) {
        const struct rd_kafka_metadata *md = NULL;
        rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
        int n = -1;

        if (rd_kafka_metadata(rk, 0, rkt, &md, 5000) == RD_KAFKA_RESP_ERR_NO_ERROR) {
                if (md->topic_cnt == 1 && md->topics[0].err == RD_KAFKA_RESP_ERR_NO_ERROR) {
                        n = md->topics[0].partition_cnt;
                        for (int i = 0; i < md->topics[0].partition_cnt; i++)
                                if (md->topics[0].partitions[i].leader < 0)
                                        n = -1;
                }
                rd_kafka_metadata_destroy(md);
        }
        rd_kafka_topic_destroy(rkt);
        return n;
}

static void create_topic(const char *name, int partitions) {
        char err[512];
        rd_kafka_NewTopic_t *nt = rd_kafka_NewTopic_new(name, partitions, 1, err, sizeof(err));
        rd_kafka_AdminOptions_t *opt = rd_kafka_AdminOptions_new(producer, RD_KAFKA_ADMIN_OP_CREATETOPICS);
        rd_kafka_queue_t *q = rd_kafka_queue_new(producer);
        size_t cnt = 0;

        assert_non_null(nt);
        rd_kafka_AdminOptions_set_operation_timeout(opt, 30000, err, sizeof(err));
        rd_kafka_CreateTopics(producer, &nt, 1, opt, q);
        rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 60000);
        assert_non_null(ev);
        const rd_kafka_CreateTopics_result_t *res = rd_kafka_event_CreateTopics_result(ev);
        assert_non_null(res);
        const rd_kafka_topic_result_t **tr = rd_kafka_CreateTopics_result_topics(res, &cnt);
        assert_int_equal(cnt, 1);
        if (rd_kafka_topic_result_error(tr[0])) {
                fprintf(stderr, "create topic %s: %s\n", name, rd_kafka_topic_result_error_string(tr[0]));
                fail();
        }
        rd_kafka_event_destroy(ev);
        rd_kafka_queue_destroy(q);
        rd_kafka_AdminOptions_destroy(opt);
        rd_kafka_NewTopic_destroy(nt);

        double deadline = now_s() + 30;
        while (partitions_ready(producer, name) != partitions) {
                if (now_s() > deadline) {
                        fprintf(stderr, "topic %s: partitions without a leader after 30 s\n", name);
                        fail();
                }
                nap_ms(50);
        }
}

static void produce(const char *topic, int32_t partition, const char *key, const char *value, size_t len) {
        rd_kafka_resp_err_t err;

        do {
                err = rd_kafka_producev(producer, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(partition),
                                        RD_KAFKA_V_KEY(key, key ? strlen(key) : 0),
                                        RD_KAFKA_V_VALUE((void *) value, len),
                                        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
                if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL)
                        rd_kafka_poll(producer, 10);
        } while (err == RD_KAFKA_RESP_ERR__QUEUE_FULL);
        assert_int_equal(err, RD_KAFKA_RESP_ERR_NO_ERROR);
        rd_kafka_poll(producer, 0);
}

static void flush(void) {
        assert_int_equal(rd_kafka_flush(producer, 30000), RD_KAFKA_RESP_ERR_NO_ERROR);
        assert_int_equal(delivery_errors, 0);
}

/* A topic read from the beginning, every partition assigned (no group). */
typedef struct reader {
        rd_kafka_t *rk;
        char topic[96];
        int parts;
        int64_t next[64];
        strs value, key, reason, src_topic;
        size_t empty_values;
} reader;

static void reader_open(reader *r, const char *topic) {
        rd_kafka_conf_t *conf = rd_kafka_conf_new();
        char err[512], group[160];

        memset(r, 0, sizeof(*r));
        snprintf(r->topic, sizeof(r->topic), "%s", topic);
        snprintf(group, sizeof(group), "test-reader-%s-%d", topic, (int) getpid());
        conf_set(conf, "bootstrap.servers", bootstrap);
        conf_set(conf, "group.id", group);
        conf_set(conf, "enable.auto.commit", "false");
        conf_set(conf, "fetch.wait.max.ms", "100");
        conf_set(conf, "log_level", "3");
        r->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err));
        assert_non_null(r->rk);
        rk_track(r->rk, true);
        rd_kafka_poll_set_consumer(r->rk);
        double deadline = now_s() + 30;
        while ((r->parts = partitions_ready(r->rk, topic)) <= 0) {
                assert_true(now_s() < deadline);
                nap_ms(50);
        }
        assert_true(r->parts <= 64);
        rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(r->parts);
        for (int p = 0; p < r->parts; p++)
                rd_kafka_topic_partition_list_add(l, topic, p)->offset = RD_KAFKA_OFFSET_BEGINNING;
        assert_int_equal(rd_kafka_assign(r->rk, l), RD_KAFKA_RESP_ERR_NO_ERROR);
        rd_kafka_topic_partition_list_destroy(l);
}

static void header(rd_kafka_message_t *m, const char *name, strs *into) {
        rd_kafka_headers_t *h = NULL;
        const void *v = NULL;
        size_t n = 0;

        if (rd_kafka_message_headers(m, &h) == RD_KAFKA_RESP_ERR_NO_ERROR &&
            rd_kafka_header_get_last(h, name, &v, &n) == RD_KAFKA_RESP_ERR_NO_ERROR && v)
                strs_add(into, v, n);
        else
                strs_add(into, "", 0);
}

static void reader_poll(reader *r, int timeout_ms) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(r->rk, timeout_ms);

        while (m) {
                if (m->err) {
                        if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
                                fprintf(stderr, "reader %s: %s\n", r->topic, rd_kafka_message_errstr(m));
                } else {
                        strs_add(&r->value, m->payload ? m->payload : "", m->payload ? m->len : 0);
                        strs_add(&r->key, m->key ? m->key : "", m->key ? m->key_len : 0);
                        if (!m->payload || !m->len)
                                r->empty_values++;
                        header(m, "fenghuo.reason", &r->reason);
                        header(m, "fenghuo.topic", &r->src_topic);
                        r->next[m->partition] = m->offset + 1;
                }
                rd_kafka_message_destroy(m);
                m = rd_kafka_consumer_poll(r->rk, 0);
        }
}

/* Everything the topic holds right now, by its high watermarks. */
static void reader_drain(reader *r) {
        int64_t hi[64];
        double deadline = now_s() + 30;

        for (int p = 0; p < r->parts; p++) {
                int64_t lo;
                assert_int_equal(rd_kafka_query_watermark_offsets(r->rk, r->topic, p, &lo, &hi[p], 10000),
                                 RD_KAFKA_RESP_ERR_NO_ERROR);
        }
        for (;;) {
                bool done = true;
                for (int p = 0; p < r->parts; p++)
                        done &= r->next[p] >= hi[p];
                if (done)
                        return;
                assert_true(now_s() < deadline);
                reader_poll(r, 100);
        }
}

static void reader_close(reader *r) {
        if (r->rk) {
                rk_track(r->rk, false);
                rd_kafka_consumer_close(r->rk);
                rd_kafka_destroy(r->rk);
        }
        strs_free(&r->value);
        strs_free(&r->key);
        strs_free(&r->reason);
        strs_free(&r->src_topic);
        r->rk = NULL;
}

/* ---- a TCP relay in front of Redis ----
 *
 * redis.sh restarts a server on its old port only when no socket on the
 * machine has that local port, and the connections the server itself
 * closed at its stop linger in TIME_WAIT on it for a minute: a server
 * stopped under a connected daemon comes back on another port.
 * So the daemon of the Redis-outage test talks to Redis through this relay,
 * which keeps one address: "down" closes the daemon's connection and stops
 * listening (connects are refused, as with no server), "up" listens again
 * and forwards to wherever the restarted server is. */

#define RELAY_PAIRS 32

typedef struct relay {
        pthread_t thread;
        bool running;
        int port;
        int lfd;
        int ctl[2], ack[2];
        int target;
        int pair[RELAY_PAIRS][2];
} relay;

static relay rl = { .lfd = -1, .ctl = { -1, -1 }, .ack = { -1, -1 } };

static int relay_listen(int port) {
        struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t) port),
                                 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t len = sizeof(a);
        int one = 1, fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

        if (fd < 0)
                return -1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (bind(fd, (struct sockaddr *) &a, sizeof(a)) < 0 || listen(fd, 16) < 0 ||
            getsockname(fd, (struct sockaddr *) &a, &len) < 0) {
                close(fd);
                return -1;
        }
        rl.port = ntohs(a.sin_port);
        return fd;
}

static void relay_close_pair(int i) {
        close(rl.pair[i][0]);
        close(rl.pair[i][1]);
        rl.pair[i][0] = rl.pair[i][1] = -1;
}

static void relay_accept(void) {
        struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t) rl.target),
                                 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        int c = accept4(rl.lfd, NULL, NULL, SOCK_CLOEXEC), u;

        if (c < 0)
                return;
        u = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (u < 0 || connect(u, (struct sockaddr *) &a, sizeof(a)) < 0) {
                if (u >= 0)
                        close(u);
                close(c);
                return;
        }
        for (int i = 0; i < RELAY_PAIRS; i++)
                if (rl.pair[i][0] < 0) {
                        rl.pair[i][0] = c;
                        rl.pair[i][1] = u;
                        return;
                }
        close(u);
        close(c);
}

/* false when the pair is finished. */
static bool relay_copy(int from, int to) {
        char buf[65536];
        ssize_t n = read(from, buf, sizeof(buf));

        if (n <= 0)
                return false;
        for (ssize_t off = 0; off < n;) {
                ssize_t w = write(to, buf + off, (size_t) (n - off));
                if (w <= 0)
                        return false;
                off += w;
        }
        return true;
}

static void *relay_main(void *arg) {
        for (;;) {
                struct pollfd p[2 + 2 * RELAY_PAIRS];
                int n = 0;

                p[n++] = (struct pollfd) { .fd = rl.ctl[0], .events = POLLIN };
                p[n++] = (struct pollfd) { .fd = rl.lfd, .events = POLLIN };
                for (int i = 0; i < RELAY_PAIRS; i++)
                        for (int k = 0; k < 2; k++)
                                p[n++] = (struct pollfd) { .fd = rl.pair[i][k], .events = POLLIN };
                if (poll(p, (nfds_t) n, -1) < 0)
                        continue;
                if (p[0].revents) {
                        char c = 0;
                        if (read(rl.ctl[0], &c, 1) != 1)
                                c = 'Q';
                        /* 'D' and 'Q' drop every connection and the listener. */
                        for (int i = 0; i < RELAY_PAIRS; i++)
                                if (rl.pair[i][0] >= 0)
                                        relay_close_pair(i);
                        if (rl.lfd >= 0)
                                close(rl.lfd);
                        rl.lfd = c == 'U' ? relay_listen(rl.port) : -1;
                        char ok = rl.lfd >= 0 || c != 'U' ? 'y' : 'n';
                        if (write(rl.ack[1], &ok, 1) != 1 || c == 'Q')
                                return NULL;
                        continue;
                }
                if (p[1].revents)
                        relay_accept();
                for (int i = 0; i < RELAY_PAIRS; i++)
                        for (int k = 0; k < 2; k++)
                                if (rl.pair[i][k] >= 0 && p[2 + 2 * i + k].revents &&
                                    !relay_copy(rl.pair[i][k], rl.pair[i][1 - k]))
                                        relay_close_pair(i);
        }
}

/* 'D' down, 'U' up (to rl.target), 'Q' quit; returns once done. */
static bool relay_command(char c) {
        char ok = 'n';
        if (write(rl.ctl[1], &c, 1) != 1 || read(rl.ack[0], &ok, 1) != 1)
                return false;
        return ok == 'y';
}

static void relay_start(int target) {
        for (int i = 0; i < RELAY_PAIRS; i++)
                rl.pair[i][0] = rl.pair[i][1] = -1;
        rl.target = target;
        rl.port = 0;
        assert_int_equal(pipe2(rl.ctl, O_CLOEXEC), 0);
        assert_int_equal(pipe2(rl.ack, O_CLOEXEC), 0);
        rl.lfd = relay_listen(0);
        assert_true(rl.lfd >= 0);
        assert_int_equal(pthread_create(&rl.thread, NULL, relay_main, NULL), 0);
        rl.running = true;
}

static void relay_stop(void) {
        if (!rl.running)
                return;
        relay_command('Q');
        pthread_join(rl.thread, NULL);
        for (int i = 0; i < 2; i++) {
                close(rl.ctl[i]);
                close(rl.ack[i]);
        }
        rl.running = false;
}

/* ---- the daemon ---- */

typedef struct tenv {
        char name[16];
        char dir[400];
        char topic[N_KINDS][48];
        char alerts[48], dlq[48], group[48];
        char stream[48], hash[48], channel[48];
        char rules[480];
        char config[480];
        char state[480];
} tenv;

typedef struct proc {
        pid_t pid;
        char log[500];
        double started;
} proc;

/* redis: the port the daemon sends alerts to, 0 for none. */
static void env_init(tenv *t, const char *name, int in_partitions, int redis, const char *rules) {
        memset(t, 0, sizeof(*t));
        snprintf(t->name, sizeof(t->name), "%s", name);
        snprintf(t->dir, sizeof(t->dir), "%s/%s", tmpdir, name);
        assert_int_equal(mkdir(t->dir, 0755), 0);
        for (int k = 0; k < N_KINDS; k++) {
                snprintf(t->topic[k], sizeof(t->topic[k]), "%s.%s", name, kind_names[k]);
                create_topic(t->topic[k], in_partitions);
        }
        snprintf(t->alerts, sizeof(t->alerts), "%s.alerts", name);
        snprintf(t->dlq, sizeof(t->dlq), "%s.deadletter", name);
        create_topic(t->alerts, 4);
        create_topic(t->dlq, 1);
        snprintf(t->group, sizeof(t->group), "%s-fenghuo", name);
        snprintf(t->stream, sizeof(t->stream), "%s:alerts:stream", name);
        snprintf(t->hash, sizeof(t->hash), "%s:alerts:active", name);
        snprintf(t->channel, sizeof(t->channel), "%s:alerts", name);
        if (rules)
                snprintf(t->rules, sizeof(t->rules), "%s", rules);
        else {
                snprintf(t->rules, sizeof(t->rules), "%s/rules", t->dir);
                assert_int_equal(mkdir(t->rules, 0755), 0);
        }
        snprintf(t->config, sizeof(t->config), "%s/fenghuo.yaml", t->dir);
        snprintf(t->state, sizeof(t->state), "%s/state", t->dir);

        FILE *f = fopen(t->config, "we");
        assert_non_null(f);
        fprintf(f,
                "rules: \"%s\"\n"
                "stations: \"%s\"\n"
                "state_dir: \"%s\"\n"
                "stdout: false\n"
                "log_level: info\n"
                "stats_interval: 0s\n"
                "shutdown_timeout: 10s\n"
                "kafka:\n"
                "  brokers: \"%s\"\n"
                "  group_id: %s\n"
                "  alerts_topic: %s\n"
                "  dead_letter_topic: %s\n"
                "  topics:\n",
                t->rules, stations, t->state, bootstrap, t->group, t->alerts, t->dlq);
        for (int k = 0; k < N_KINDS; k++)
                fprintf(f, "    %s: %s\n", kind_names[k], t->topic[k]);
        fprintf(f, "  properties:\n    log_level: \"4\"\n"
                   "  consumer_properties:\n    session.timeout.ms: \"6000\"\n");
        if (redis)
                fprintf(f, "redis:\n  host: 127.0.0.1\n  port: %d\n  stream: \"%s\"\n  active_hash: \"%s\"\n"
                           "  channel: \"%s\"\n",
                        redis, t->stream, t->hash, t->channel);
        assert_int_equal(fclose(f), 0);
}

static void track(pid_t pid, bool add) {
        for (size_t i = 0; i < sizeof(live) / sizeof(live[0]); i++)
                if (add ? live[i] == 0 : live[i] == pid) {
                        live[i] = add ? pid : 0;
                        return;
                }
}

static void log_tail(const proc *d) {
        size_t len;
        char *text = slurp(d->log, &len);
        const char *p = len > 6000 ? text + len - 6000 : text;
        fprintf(stderr, "---- end of %s ----\n%s---- (end) ----\n", d->log, p);
        free(text);
}

/* 1 still running, else fills *code. */
static int proc_poll(proc *d, int *code) {
        int st;
        pid_t r = waitpid(d->pid, &st, WNOHANG);
        if (r == 0)
                return 1;
        assert_int_equal(r, d->pid);
        track(d->pid, false);
        d->pid = 0;
        *code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        return 0;
}

static void check_alive(proc *d) {
        int code;
        if (d->pid && proc_poll(d, &code) == 0) {
                fprintf(stderr, "the daemon exited unexpectedly with %d\n", code);
                log_tail(d);
                fail();
        }
}

/* Waits until the daemon's log holds at least `times` copies of needle. */
static void wait_log(proc *d, const char *needle, size_t times, double seconds) {
        double deadline = now_s() + seconds;

        for (;;) {
                char *text = slurp(d->log, NULL);
                size_t n = count_substr(text, needle);
                free(text);
                if (n >= times)
                        return;
                check_alive(d);
                if (now_s() > deadline) {
                        fprintf(stderr, "no \"%s\" (x%zu) in the daemon's log after %.0f s\n", needle, times, seconds);
                        log_tail(d);
                        fail();
                }
                nap_ms(25);
        }
}

static proc start_daemon(const tenv *t, const char *log_name) {
        proc d = { 0 };
        char **env;
        size_t n = 0, k = 0;
        pid_t parent = getpid();
        const char *argv[] = { bin, "run", "--config", t->config, NULL };

        snprintf(d.log, sizeof(d.log), "%s/%s", t->dir, log_name);
        /* Plain log lines on stderr, and no systemd around the child. */
        while (environ[n])
                n++;
        env = calloc(n + 1, sizeof(*env));
        assert_non_null(env);
        for (size_t i = 0; i < n; i++)
                if (strncmp(environ[i], "JOURNAL_STREAM=", 15) && strncmp(environ[i], "NOTIFY_SOCKET=", 14) &&
                    strncmp(environ[i], "WATCHDOG_", 9))
                        env[k++] = environ[i];
        env[k] = NULL;
        int fd = open(d.log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        int nul = open("/dev/null", O_RDWR | O_CLOEXEC);
        assert_true(fd >= 0 && nul >= 0);

        d.started = now_s();
        d.pid = fork();
        assert_true(d.pid >= 0);
        if (d.pid == 0) {
                /* Async-signal-safe calls only: the parent has threads. */
                prctl(PR_SET_PDEATHSIG, SIGKILL);
                if (getppid() != parent)
                        _exit(127);
                dup2(nul, 0);
                dup2(nul, 1);
                dup2(fd, 2);
                execve(bin, (char *const *) argv, env);
                _exit(127);
        }
        close(fd);
        close(nul);
        free(env);
        track(d.pid, true);
        /* Until it says so, SIGHUP would still kill it. */
        wait_log(&d, "started rules=", 1, 30);
        return d;
}

static void signal_daemon(proc *d, int sig) {
        check_alive(d);
        assert_int_equal(kill(d->pid, sig), 0);
}

/* Waits for an exit; returns its code and how long it took. */
static int wait_exit(proc *d, double seconds, double *ret_took) {
        double t = now_s(), deadline = t + seconds;
        int code;

        while (proc_poll(d, &code) == 1) {
                if (now_s() > deadline) {
                        fprintf(stderr, "the daemon did not exit within %.0f s\n", seconds);
                        log_tail(d);
                        kill(d->pid, SIGKILL);
                        fail();
                }
                nap_ms(10);
        }
        if (ret_took)
                *ret_took = now_s() - t;
        return code;
}

/* A clean stop: exit 0 within the configured shutdown timeout (10 s). */
static void stop_daemon(proc *d) {
        double took;
        signal_daemon(d, SIGTERM);
        int code = wait_exit(d, 15, &took);
        if (code != 0) {
                fprintf(stderr, "the daemon exited with %d on SIGTERM\n", code);
                log_tail(d);
        }
        assert_int_equal(code, 0);
        assert_true(took < 11);
}

/* Polls r until it holds n messages; false (after saying so) when seconds
 * pass first, so the caller can still show what differs. */
static bool wait_count_soft(reader *r, proc *d, size_t n, double seconds) {
        double deadline = now_s() + seconds;

        while (r->value.n < n) {
                if (d)
                        check_alive(d);
                if (now_s() > deadline) {
                        fprintf(stderr, "%s: %zu messages after %.0f s, %zu expected\n", r->topic, r->value.n, seconds, n);
                        if (d)
                                log_tail(d);
                        return false;
                }
                reader_poll(r, 100);
        }
        return true;
}

static void wait_count(reader *r, proc *d, size_t n, double seconds) {
        if (!wait_count_soft(r, d, n, seconds))
                fail();
}

static void wait_xlen(const char *stream, proc *d, long long n, double seconds) {
        double deadline = now_s() + seconds;
        long long got;

        while ((got = redis_xlen(stream)) < n) {
                if (d)
                        check_alive(d);
                if (now_s() > deadline) {
                        fprintf(stderr, "%s: %lld entries after %.0f s, %lld expected\n", stream, got, seconds, n);
                        if (d)
                                log_tail(d);
                        fail();
                }
                nap_ms(50);
        }
}

/* ---- input ---- */

typedef struct input {
        char *text;
        strs line;          /* the non-blank lines, as replay reads them */
} input;

static const station *find_station(const char *id) {
        for (size_t i = 0; i < n_reg; i++)
                if (!strcmp(reg[i].id, id))
                        return &reg[i];
        return NULL;
}

static bool blank(const char *p, size_t n) {
        for (size_t i = 0; i < n; i++)
                if (p[i] != ' ' && p[i] != '\t' && p[i] != '\r')
                        return false;
        return true;
}

static void simulate(const tenv *t, unsigned seed, const char *bad, input *in, char *path, size_t path_len) {
        char s[16];
        size_t len;

        snprintf(s, sizeof(s), "%u", seed);
        snprintf(path, path_len, "%s/input.jsonl", t->dir);
        const char *argv[] = { bin, "simulate", "--stations", stations, "--duration", "1d", "--step", "10m",
                               "--bad", bad, "--seed", s, NULL };
        assert_int_equal(run(argv, path, NULL), 0);
        in->text = slurp(path, &len);
        in->line = (strs) { 0 };
        for (size_t i = 0; i < len;) {
                char *nl = memchr(in->text + i, '\n', len - i);
                size_t n = nl ? (size_t) (nl - (in->text + i)) : len - i;
                if (!blank(in->text + i, n))
                        strs_add(&in->line, in->text + i, n);
                i += n + 1;
        }
}

static void input_free(input *in) {
        free(in->text);
        strs_free(&in->line);
}

/* Keyed by sensor, to its kind's topic; a line without a known sensor goes
 * unkeyed to the rain topic. */
static void produce_line(const tenv *t, const char *line) {
        char sensor[80];
        const station *st;

        json_str(line, "sensor", sensor, sizeof(sensor));
        st = sensor[0] ? find_station(sensor) : NULL;
        produce(t->topic[st ? st->kind : 0], RD_KAFKA_PARTITION_UA, st ? sensor : NULL, line, strlen(line));
}

static void produce_range(const tenv *t, const input *in, size_t from, size_t to) {
        for (size_t i = from; i < to; i++)
                produce_line(t, in->line.v[i]);
        flush();
}

/* `fenghuo replay` of lines[0..n) with the test's rules. */
static strs replay(const tenv *t, const input *in, size_t n, const char *tag, size_t *ret_rejected) {
        char in_path[600], out_path[600], err_path[600];
        FILE *f;

        snprintf(in_path, sizeof(in_path), "%s/replay-%s.jsonl", t->dir, tag);
        snprintf(out_path, sizeof(out_path), "%s/replay-%s.out", t->dir, tag);
        snprintf(err_path, sizeof(err_path), "%s/replay-%s.err", t->dir, tag);
        f = fopen(in_path, "we");
        assert_non_null(f);
        for (size_t i = 0; i < n; i++) {
                fputs(in->line.v[i], f);
                fputc('\n', f);
        }
        assert_int_equal(fclose(f), 0);
        const char *argv[] = { bin, "replay", "--rules", t->rules, "--stations", stations, in_path, NULL };
        assert_int_equal(run(argv, out_path, err_path), 0);
        char *out = slurp(out_path, NULL);
        strs s = strs_lines(out);
        free(out);
        if (ret_rejected) {
                char *err = slurp(err_path, NULL);
                const char *p = strstr(err, "summary:");
                assert_non_null(p);
                p = strstr(p, " rejected");
                assert_non_null(p);
                while (p > err && p[-1] >= '0' && p[-1] <= '9')
                        p--;
                *ret_rejected = strtoul(p, NULL, 10);
                free(err);
        }
        return s;
}

/* ---- the tests ---- */

#define NEED_SERVERS()                                                  \
        do {                                                            \
                if (!servers_up) {                                      \
                        fprintf(stderr, "skipped: %s\n", unavailable);  \
                        skip();                                         \
                }                                                       \
        } while (0)

static void alerts_through_real_kafka_equal_replay_of_the_same_input(void **state) {
        tenv t;
        input in;
        char path[600];
        size_t rejected;
        reader alerts, dlq;

        NEED_SERVERS();
        env_init(&t, "t1", 4, redis_port, rules_dir);
        simulate(&t, 21, "0.01", &in, path, sizeof(path));
        strs want = replay(&t, &in, in.line.n, "full", &rejected);
        assert_true(want.n >= 50);
        assert_true(rejected >= 10);

        produce_range(&t, &in, 0, in.line.n);
        proc d = start_daemon(&t, "daemon.log");
        reader_open(&alerts, t.alerts);
        if (wait_count_soft(&alerts, &d, want.n, 60))
                wait_xlen(t.stream, &d, (long long) want.n, 30);
        stop_daemon(&d);

        reader_drain(&alerts);
        assert_same_per_sensor("Kafka alerts topic", want.v, want.n, alerts.value.v, alerts.value.n);

        strs stream = redis_stream(t.stream);
        assert_same_per_sensor("Redis stream", want.v, want.n, stream.v, stream.n);

        strs fields = { 0 }, values = { 0 };
        active act = active_after(want.v, want.n, 0);
        redis_hash(t.hash, &fields, &values);
        assert_true(active_count(&act) > 0);
        assert_int_equal(fields.n, active_count(&act));
        for (size_t i = 0; i < fields.n; i++) {
                const char *w = active_get(&act, fields.v[i]);
                if (!w)
                        fprintf(stderr, "active hash: %s is not active after replay\n", fields.v[i]);
                assert_non_null(w);
                assert_string_equal(values.v[i], w);
        }

        /* Every rejected line went to the dead-letter topic, once. */
        reader_open(&dlq, t.dlq);
        reader_drain(&dlq);
        assert_int_equal(dlq.value.n, rejected);

        active_free(&act);
        strs_free(&fields);
        strs_free(&values);
        strs_free(&stream);
        reader_close(&dlq);
        reader_close(&alerts);
        strs_free(&want);
        input_free(&in);
}

static void malformed_messages_land_in_the_dead_letter_topic_with_their_reason(void **state) {
        static const struct {
                const char *reason;
                const char *text;
        } bad[] = {
                { "malformed_json", "{\"sensor\":\"MY-RG-0001\",\"ts\":\"2023-07-30T00:10:00+08:00\",\"values\":{\"rain_mm\":1}" },
                { "malformed_json", "" },
                { "missing_field", "{\"sensor\":\"MY-RG-0001\",\"values\":{\"rain_mm\":1}}" },
                { "bad_sensor", "{\"sensor\":\"bad id!\",\"ts\":1690646400000,\"values\":{\"rain_mm\":1}}" },
                { "bad_timestamp", "{\"sensor\":\"MY-RG-0001\",\"ts\":\"2023-13-30T00:10:00+08:00\",\"values\":{\"rain_mm\":1}}" },
                { "bad_value", "{\"sensor\":\"MY-RG-0001\",\"ts\":\"2023-07-30T00:10:00+08:00\",\"values\":{\"rain_mm\":\"1\"}}" },
                { "bad_values", "{\"sensor\":\"MY-RG-0001\",\"ts\":\"2023-07-30T00:10:00+08:00\",\"values\":{}}" },
                { "unknown_sensor", "{\"sensor\":\"MY-RG-9999\",\"ts\":\"2023-07-30T00:10:00+08:00\",\"values\":{\"rain_mm\":1}}" },
                { "too_long", NULL },
                { "future_timestamp", NULL },
        };
        enum { N = sizeof(bad) / sizeof(bad[0]) };
        char *text[N], key[32];
        tenv t;
        reader dlq, alerts;

        NEED_SERVERS();
        env_init(&t, "t2", 1, 0, rules_dir);
        for (size_t i = 0; i < N; i++) {
                if (!strcmp(bad[i].reason, "too_long")) {
                        /* Valid but for its size: an ignored member pads it past 64 KiB. */
                        size_t n = 70000;
                        text[i] = malloc(n + 200);
                        assert_non_null(text[i]);
                        int k = snprintf(text[i], 200, "{\"sensor\":\"MY-RG-0001\",\"ts\":1690646400000,\"values\":{\"rain_mm\":1},\"pad\":\"");
                        memset(text[i] + k, 'x', n);
                        strcpy(text[i] + k + n, "\"}");
                } else if (!strcmp(bad[i].reason, "future_timestamp")) {
                        char buf[200];
                        snprintf(buf, sizeof(buf), "{\"sensor\":\"MY-RG-0001\",\"ts\":%lld,\"values\":{\"rain_mm\":1}}",
                                 (long long) time(NULL) * 1000 + 3600 * 1000LL);
                        text[i] = strdup(buf);
                } else
                        text[i] = strdup(bad[i].text);
        }
        proc d = start_daemon(&t, "daemon.log");
        for (size_t i = 0; i < N; i++) {
                snprintf(key, sizeof(key), "bad-%zu", i);
                produce(t.topic[0], RD_KAFKA_PARTITION_UA, key, text[i], strlen(text[i]));
        }
        /* After all that, a good reading still alerts. */
        const char *good = "{\"sensor\":\"MY-RG-0001\",\"ts\":\"2023-07-30T00:00:00+08:00\",\"values\":{\"rain_mm\":120}}";
        produce(t.topic[0], RD_KAFKA_PARTITION_UA, "MY-RG-0001", good, strlen(good));
        flush();

        reader_open(&alerts, t.alerts);
        reader_open(&dlq, t.dlq);
        wait_count(&alerts, &d, 1, 60);
        wait_count(&dlq, &d, N, 30);
        stop_daemon(&d);
        reader_drain(&dlq);
        reader_drain(&alerts);

        assert_int_equal(alerts.value.n, 1);
        assert_non_null(strstr(alerts.value.v[0], "\"event\":\"raised\",\"rule\":\"rainstorm\",\"sensor\":\"MY-RG-0001\",\"level\":\"red\""));
        /* One input partition and one dead-letter partition: same order. */
        assert_int_equal(dlq.value.n, N);
        for (size_t i = 0; i < N; i++) {
                snprintf(key, sizeof(key), "bad-%zu", i);
                if (strcmp(dlq.reason.v[i], bad[i].reason))
                        fprintf(stderr, "dead letter %zu: reason %s, expected %s\n", i, dlq.reason.v[i], bad[i].reason);
                assert_string_equal(dlq.reason.v[i], bad[i].reason);
                assert_string_equal(dlq.key.v[i], key);
                assert_string_equal(dlq.src_topic.v[i], t.topic[0]);
                assert_int_equal(strlen(dlq.value.v[i]), strlen(text[i]));
                assert_string_equal(dlq.value.v[i], text[i]);
        }
        for (size_t i = 0; i < N; i++)
                free(text[i]);
        reader_close(&dlq);
        reader_close(&alerts);
}

static void produce_reading(const tenv *t, const char *sensor, int64_t ts, double rain) {
        char buf[200];
        snprintf(buf, sizeof(buf), "{\"sensor\":\"%s\",\"ts\":%lld,\"values\":{\"rain_mm\":%g}}", sensor,
                 (long long) ts, rain);
        produce(t->topic[0], RD_KAFKA_PARTITION_UA, sensor, buf, strlen(buf));
        flush();
}

static void assert_alert(const char *json, const char *sensor, const char *event, const char *level, const char *value) {
        char s[80], e[32], l[32], want_value[64];
        json_str(json, "sensor", s, sizeof(s));
        json_str(json, "event", e, sizeof(e));
        json_str(json, "level", l, sizeof(l));
        snprintf(want_value, sizeof(want_value), "\"value\":%s,", value);
        if (strcmp(s, sensor) || strcmp(e, event) || strcmp(l, level) || !strstr(json, want_value)) {
                fprintf(stderr, "expected %s %s %s value %s, got %s\n", sensor, event, level, value, json);
                fail();
        }
}

static void sighup_with_a_broken_rule_file_keeps_the_old_rules_and_says_why(void **state) {
        char path[600], broken[600], want[700];
        tenv t;
        reader alerts;

        NEED_SERVERS();
        env_init(&t, "t3", 1, 0, NULL);
        snprintf(path, sizeof(path), "%s/a.yaml", t.rules);
        write_file(path, "rules:\n"
                         "  - id: burst\n"
                         "    kind: rain\n"
                         "    levels:\n"
                         "      red: last(rain_mm) >= 50\n"
                         "    report: last(rain_mm)\n");
        proc d = start_daemon(&t, "daemon.log");
        reader_open(&alerts, t.alerts);
        produce_reading(&t, "MY-RG-0001", T0_MS, 60);
        wait_count(&alerts, &d, 1, 60);
        assert_alert(alerts.value.v[0], "MY-RG-0001", "raised", "red", "60");

        snprintf(broken, sizeof(broken), "%s/b.yaml", t.rules);
        write_file(broken, "rules:\n"
                           "  - id: broken\n"
                           "    kind: rain\n"
                           "    levels:\n"
                           "      red: summ(rain_mm, 3h) >= 1\n");
        signal_daemon(&d, SIGHUP);
        wait_log(&d, "reload refused", 1, 30);
        char *log = slurp(d.log, NULL);
        snprintf(want, sizeof(want), "%s:5:12: ", broken);
        if (!strstr(log, want))
                log_tail(&d);
        assert_non_null(strstr(log, want));
        assert_non_null(strstr(log, "summ"));
        assert_null(strstr(log, "reloaded rules="));
        free(log);

        /* Still the old rule: below 50 clears, above raises again. */
        produce_reading(&t, "MY-RG-0001", T0_MS + 10 * MIN_MS, 10);
        produce_reading(&t, "MY-RG-0001", T0_MS + 20 * MIN_MS, 70);
        wait_count(&alerts, &d, 3, 30);
        stop_daemon(&d);
        reader_drain(&alerts);
        assert_int_equal(alerts.value.n, 3);
        assert_alert(alerts.value.v[1], "MY-RG-0001", "cleared", "none", "10");
        assert_alert(alerts.value.v[2], "MY-RG-0001", "raised", "red", "70");
        assert_non_null(strstr(alerts.value.v[2], "\"rule\":\"burst\""));
        reader_close(&alerts);
}

static void sighup_with_a_changed_threshold_changes_behaviour_without_losing_windows(void **state) {
        char path[600];
        tenv t;
        reader alerts;
        static const char *const rule =
                "rules:\n"
                "  - id: heavy\n"
                "    kind: rain\n"
                "    levels:\n"
                "      orange: sum(rain_mm, 3h) >= %d\n"
                "    report: sum(rain_mm, 3h)\n";
        char text[300];

        NEED_SERVERS();
        env_init(&t, "t4", 1, 0, NULL);
        snprintf(path, sizeof(path), "%s/a.yaml", t.rules);
        snprintf(text, sizeof(text), rule, 50);
        write_file(path, text);
        proc d = start_daemon(&t, "daemon.log");
        reader_open(&alerts, t.alerts);

        /* 40 mm over 2 h: under 50, no alert. */
        for (int i = 0; i <= 4; i++)
                produce_reading(&t, "MY-RG-0002", T0_MS + i * 30 * MIN_MS, 8);
        /* One partition: once this sentinel's alert is out, the 40 mm are in. */
        produce_reading(&t, "MY-RG-0003", T0_MS, 60);
        wait_count(&alerts, &d, 1, 60);
        assert_alert(alerts.value.v[0], "MY-RG-0003", "raised", "orange", "60");

        snprintf(text, sizeof(text), rule, 30);
        write_file(path, text);
        signal_daemon(&d, SIGHUP);
        wait_log(&d, "reloaded rules=1", 1, 30);

        /* 41 >= 30 only if the 2 h of window survived the reload. */
        produce_reading(&t, "MY-RG-0002", T0_MS + 150 * MIN_MS, 1);
        wait_count(&alerts, &d, 2, 30);
        stop_daemon(&d);
        reader_drain(&alerts);
        assert_int_equal(alerts.value.n, 2);
        assert_alert(alerts.value.v[1], "MY-RG-0002", "raised", "orange", "41");
        reader_close(&alerts);
}

static void sigterm_mid_stream_then_restart_gives_exactly_the_alerts_of_one_run(void **state) {
        tenv t;
        input in;
        char path[600];
        reader alerts;
        bool stopped = false;
        double signalled = 0, exited = 0;
        int code = -1;

        NEED_SERVERS();
        env_init(&t, "t5", 4, 0, rules_dir);
        simulate(&t, 22, "0.01", &in, path, sizeof(path));
        strs want = replay(&t, &in, in.line.n, "full", NULL);
        assert_true(want.n >= 50);

        proc d = start_daemon(&t, "daemon-1.log");
        reader_open(&alerts, t.alerts);
        /* Paced, so the stop lands while readings are still coming. */
        size_t chunk = 200;
        for (size_t i = 0; i < in.line.n; i += chunk) {
                size_t end = i + chunk < in.line.n ? i + chunk : in.line.n;
                for (size_t j = i; j < end; j++)
                        produce_line(&t, in.line.v[j]);
                rd_kafka_flush(producer, 5000);
                reader_poll(&alerts, 40);
                if (stopped && d.pid && proc_poll(&d, &code) == 0)
                        exited = now_s();
                if (!stopped && alerts.value.n >= want.n / 3) {
                        signal_daemon(&d, SIGTERM);
                        signalled = now_s();
                        stopped = true;
                }
        }
        flush();
        if (!stopped) {
                wait_count(&alerts, &d, want.n / 3, 60);
                signal_daemon(&d, SIGTERM);
                signalled = now_s();
        }
        if (d.pid) {
                code = wait_exit(&d, 15, NULL);
                exited = now_s();
        }
        double took = exited - signalled;
        if (code != 0)
                log_tail(&d);
        assert_int_equal(code, 0);
        assert_true(took < 11);
        wait_log(&d, "state saved to", 1, 1);
        reader_drain(&alerts);
        size_t first_run = alerts.value.n;
        fprintf(stderr, "first run: %zu of %zu alerts; exited %.2f s after SIGTERM\n", first_run, want.n, took);
        assert_true(first_run < want.n);

        proc d2 = start_daemon(&t, "daemon-2.log");
        wait_log(&d2, "state restored from", 1, 1);
        wait_count_soft(&alerts, &d2, want.n, 60);
        stop_daemon(&d2);
        reader_drain(&alerts);
        assert_same_per_sensor("Kafka alerts topic over two runs", want.v, want.n, alerts.value.v, alerts.value.n);

        reader_close(&alerts);
        strs_free(&want);
        input_free(&in);
}

static void redis_down_for_30_seconds_loses_no_alert_and_kafka_is_not_held_up(void **state) {
        tenv t;
        input in;
        char path[600], port[32];
        reader alerts;

        NEED_SERVERS();
        relay_start(redis_port);
        env_init(&t, "t6", 4, rl.port, rules_dir);
        simulate(&t, 23, "0.01", &in, path, sizeof(path));
        size_t n1 = in.line.n / 4, n2 = in.line.n * 3 / 4;
        strs want = replay(&t, &in, in.line.n, "full", NULL);
        strs want1 = replay(&t, &in, n1, "p1", NULL);
        strs want2 = replay(&t, &in, n2, "p2", NULL);
        size_t c1 = want1.n, c2 = want2.n;
        /* Alerts come out at readings, so a prefix's alerts are a prefix. */
        for (size_t i = 0; i < c2; i++)
                assert_string_equal(want2.v[i], want.v[i]);
        for (size_t i = 0; i < c1; i++)
                assert_string_equal(want1.v[i], want.v[i]);
        assert_true(c1 >= 5);
        assert_true(c2 - c1 >= 20);

        proc d = start_daemon(&t, "daemon.log");
        reader_open(&alerts, t.alerts);
        produce_range(&t, &in, 0, n1);
        wait_count(&alerts, &d, c1, 60);
        /* Quiet point: everything so far is in Redis, nothing in flight. */
        wait_xlen(t.stream, &d, (long long) c1, 30);

        assert_true(relay_command('D'));
        assert_int_equal(script("redis.sh", "stop", redis_dir, NULL, 0), 0);
        double down = now_s();
        assert_int_equal(redis_xlen(t.stream), -1);

        /* Half the day's readings over 30 s while Redis is away. */
        size_t steps = 60, mid_count = 0;
        for (size_t s = 0; s < steps; s++) {
                size_t from = n1 + (n2 - n1) * s / steps, to = n1 + (n2 - n1) * (s + 1) / steps;
                for (size_t j = from; j < to; j++)
                        produce_line(&t, in.line.v[j]);
                rd_kafka_poll(producer, 0);
                double until = down + 30.0 * (double) (s + 1) / (double) steps;
                while (now_s() < until)
                        reader_poll(&alerts, 20);
                if (s == steps / 2)
                        mid_count = alerts.value.n;
                check_alive(&d);
        }
        flush();
        /* Kafka kept up without Redis: every alert so far is there. */
        wait_count(&alerts, &d, c2, 10);
        double down_for = now_s() - down;
        fprintf(stderr, "Redis down %.1f s: Kafka alerts %zu -> %zu (midway %zu)\n", down_for, c1, alerts.value.n, mid_count);
        assert_true(mid_count > c1);
        assert_true(down_for >= 30);
        assert_int_equal(redis_xlen(t.stream), -1);

        assert_int_equal(script("redis.sh", "start", redis_dir, port, sizeof(port)), 0);
        if (atoi(port) != redis_port)
                fprintf(stderr, "redis.sh restarted Redis on port %s, not %d (the relay follows it)\n", port, redis_port);
        redis_port = rl.target = atoi(port);
        assert_true(redis_port > 0);
        assert_true(relay_command('U'));
        produce_range(&t, &in, n2, in.line.n);
        /* The restarted server is empty (no persistence): it must get every
         * alert from the stop on, from the backlog and after. */
        if (wait_count_soft(&alerts, &d, want.n, 60))
                wait_xlen(t.stream, &d, (long long) (want.n - c1), 30);
        stop_daemon(&d);
        char *log = slurp(d.log, NULL);
        assert_null(strstr(log, "consumption paused"));
        free(log);

        reader_drain(&alerts);
        assert_same_per_sensor("Kafka alerts topic", want.v, want.n, alerts.value.v, alerts.value.n);
        /* Nothing was in flight when Redis stopped, and a resend to a fresh
         * server cannot meet an earlier copy: so exactly once, in order. */
        strs stream = redis_stream(t.stream);
        assert_same_per_sensor("Redis stream after the restart", want.v + c1, want.n - c1, stream.v, stream.n);

        /* The hash: no stale entry, and every pair changed since the stop
         * shows its latest event. Pairs last changed before the stop were
         * lost with the server's memory: the daemon does not rebuild the
         * hash (fh_redis_sync_active) when Redis comes back. */
        strs fields = { 0 }, values = { 0 };
        active all = active_after(want.v, want.n, 0), since = active_after(want.v, want.n, c1);
        redis_hash(t.hash, &fields, &values);
        for (size_t i = 0; i < fields.n; i++) {
                const char *w = active_get(&all, fields.v[i]);
                if (!w)
                        fprintf(stderr, "active hash: stale entry %s\n", fields.v[i]);
                assert_non_null(w);
                assert_string_equal(values.v[i], w);
        }
        for (size_t j = 0; j < since.field.n; j++) {
                if (since.cleared[j])
                        continue;
                size_t i;
                for (i = 0; i < fields.n; i++)
                        if (!strcmp(fields.v[i], since.field.v[j]))
                                break;
                if (i == fields.n)
                        fprintf(stderr, "active hash: %s missing\n", since.field.v[j]);
                assert_true(i < fields.n);
        }
        fprintf(stderr, "active hash: %zu entries; %zu active at the end, %zu of them changed since the stop\n",
                fields.n, active_count(&all), active_count(&since));

        active_free(&all);
        active_free(&since);
        strs_free(&fields);
        strs_free(&values);
        strs_free(&stream);
        reader_close(&alerts);
        strs_free(&want);
        strs_free(&want1);
        strs_free(&want2);
        input_free(&in);
}

/* ---- fixtures ---- */

static void kill_live_daemons(void) {
        for (size_t i = 0; i < sizeof(live) / sizeof(live[0]); i++)
                if (live[i] > 0) {
                        kill(live[i], SIGKILL);
                        waitpid(live[i], NULL, 0);
                        live[i] = 0;
                }
}

static void stop_servers(void) {
        static bool done;
        if (done || !tmpdir[0])
                return;
        done = true;
        kill_live_daemons();
        if (kafka_dir[0])
                script("kafka.sh", "stop", kafka_dir, NULL, 0);
        if (redis_dir[0])
                script("redis.sh", "stop", redis_dir, NULL, 0);
}

static int test_setup(void **state) {
        test_started = now_s();
        return 0;
}

static int test_teardown(void **state) {
        char port[32];

        kill_live_daemons();
        relay_stop();
        for (size_t i = 0; i < sizeof(open_rk) / sizeof(open_rk[0]); i++)
                if (open_rk[i]) {
                        rd_kafka_consumer_close(open_rk[i]);
                        rd_kafka_destroy(open_rk[i]);
                        open_rk[i] = NULL;
                }
        /* A test that failed while Redis was stopped must not take it from the next. */
        if (servers_up && redis_xlen("probe") < 0 && script("redis.sh", "start", redis_dir, port, sizeof(port)) == 0)
                redis_port = atoi(port);
        fprintf(stderr, "(%.1f s)\n", now_s() - test_started);
        return 0;
}

static bool have(const char *tool) {
        char cmd[200];
        snprintf(cmd, sizeof(cmd), "command -v %s >/dev/null 2>&1", tool);
        return system(cmd) == 0;
}

static void load_registry(void) {
        char *text = slurp(stations, NULL);
        char *save = NULL;
        bool header = true;

        for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
                char *comma = strchr(line, ','), *comma2;
                if (header || !comma) {
                        header = false;
                        continue;
                }
                comma2 = strchr(comma + 1, ',');
                assert_true(n_reg < sizeof(reg) / sizeof(reg[0]));
                snprintf(reg[n_reg].id, sizeof(reg[n_reg].id), "%.*s", (int) (comma - line), line);
                size_t kl = comma2 ? (size_t) (comma2 - comma - 1) : strlen(comma + 1);
                reg[n_reg].kind = -1;
                for (int k = 0; k < N_KINDS; k++)
                        if (strlen(kind_names[k]) == kl && !strncmp(comma + 1, kind_names[k], kl))
                                reg[n_reg].kind = k;
                assert_true(reg[n_reg].kind >= 0);
                n_reg++;
        }
        free(text);
}

/* The bundled rules minus those using age(). */
static void copy_rules(void) {
        char dir[600];
        DIR *dh;
        struct dirent *e;

        snprintf(rules_dir, sizeof(rules_dir), "%s/rules-no-age", tmpdir);
        assert_int_equal(mkdir(rules_dir, 0755), 0);
        snprintf(dir, sizeof(dir), "%s/rules", src);
        dh = opendir(dir);
        assert_non_null(dh);
        while ((e = readdir(dh))) {
                size_t n = strlen(e->d_name);
                char from[900], to[900];
                if (n < 6 || strcmp(e->d_name + n - 5, ".yaml"))
                        continue;
                snprintf(from, sizeof(from), "%s/%s", dir, e->d_name);
                char *text = slurp(from, NULL);
                if (!strstr(text, "age(")) {
                        snprintf(to, sizeof(to), "%s/%s", rules_dir, e->d_name);
                        write_file(to, text);
                }
                free(text);
        }
        closedir(dh);
}

static int setup(void **state) {
        char pid[32], port[32], err[512];

        bin = getenv("FENGHUO");
        src = getenv("SRCDIR");
        if (!bin || !src) {
                fprintf(stderr, "FENGHUO and SRCDIR must be set (meson test does)\n");
                return -1;
        }
        signal(SIGPIPE, SIG_IGN);
        snprintf(tmpdir, sizeof(tmpdir), "/tmp/fenghuo-it-XXXXXX");
        if (!mkdtemp(tmpdir))
                return -1;
        snprintf(stations, sizeof(stations), "%s/stations/miyun.csv", src);
        load_registry();
        copy_rules();

        static const char *const tools[] = { "bash", "java", "kcat", "redis-server", "redis-cli" };
        for (size_t i = 0; i < sizeof(tools) / sizeof(tools[0]); i++)
                if (!have(tools[i])) {
                        snprintf(unavailable, sizeof(unavailable),
                                 "%s not found; see tests/integration/README.md", tools[i]);
                        return 0;
                }

        /* The servers die with this process, however it ends. */
        snprintf(pid, sizeof(pid), "%d", (int) getpid());
        setenv("FENGHUO_OWNER_PID", pid, 1);
        atexit(stop_servers);
        snprintf(kafka_dir, sizeof(kafka_dir), "%s/kafka", tmpdir);
        snprintf(redis_dir, sizeof(redis_dir), "%s/redis", tmpdir);
        double t = now_s();
        if (script("kafka.sh", "start", kafka_dir, bootstrap, sizeof(bootstrap)) != 0 || !bootstrap[0]) {
                fprintf(stderr, "kafka.sh start failed\n");
                return -1;
        }
        if (script("redis.sh", "start", redis_dir, port, sizeof(port)) != 0 || !(redis_port = atoi(port))) {
                fprintf(stderr, "redis.sh start failed\n");
                return -1;
        }
        fprintf(stderr, "Kafka at %s and Redis at port %d in %.1f s\n", bootstrap, redis_port, now_s() - t);

        rd_kafka_conf_t *conf = rd_kafka_conf_new();
        conf_set(conf, "bootstrap.servers", bootstrap);
        conf_set(conf, "enable.idempotence", "true");
        conf_set(conf, "linger.ms", "5");
        conf_set(conf, "log_level", "4");
        rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
        producer = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
        if (!producer) {
                fprintf(stderr, "test producer: %s\n", err);
                return -1;
        }
        servers_up = true;
        return 0;
}

static int teardown(void **state) {
        char cmd[400];
        const char *keep = getenv("FENGHUO_TEST_KEEP");

        if (producer) {
                rd_kafka_flush(producer, 5000);
                rd_kafka_destroy(producer);
                producer = NULL;
        }
        stop_servers();
        if (keep && *keep == '1') {
                fprintf(stderr, "kept %s\n", tmpdir);
                return 0;
        }
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
        return system(cmd) == 0 ? 0 : -1;
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(alerts_through_real_kafka_equal_replay_of_the_same_input,
                                                test_setup, test_teardown),
                cmocka_unit_test_setup_teardown(malformed_messages_land_in_the_dead_letter_topic_with_their_reason,
                                                test_setup, test_teardown),
                cmocka_unit_test_setup_teardown(sighup_with_a_broken_rule_file_keeps_the_old_rules_and_says_why,
                                                test_setup, test_teardown),
                cmocka_unit_test_setup_teardown(sighup_with_a_changed_threshold_changes_behaviour_without_losing_windows,
                                                test_setup, test_teardown),
                cmocka_unit_test_setup_teardown(sigterm_mid_stream_then_restart_gives_exactly_the_alerts_of_one_run,
                                                test_setup, test_teardown),
                cmocka_unit_test_setup_teardown(redis_down_for_30_seconds_loses_no_alert_and_kafka_is_not_held_up,
                                                test_setup, test_teardown),
        };
        const char *filter = getenv("FENGHUO_TEST_FILTER");
        if (filter)
                cmocka_set_test_filter(filter);
        return cmocka_run_group_tests(tests, setup, teardown);
}
