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
 * The servers, the daemon's process and the comparison with replay are in
 * it_harness.c, shared with test_recovery.c.
 *
 * FENGHUO (the binary) and SRCDIR (the source tree) come from meson. Needs
 * java, kcat, redis-server and redis-cli (see tests/integration/README.md);
 * without them every test is skipped. FENGHUO_TEST_KEEP=1 keeps the
 * temporary directory (logs, configs, inputs) for a post-mortem;
 * FENGHUO_TEST_FILTER=pattern runs only the matching tests (cmocka's
 * wildcards). */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "it_harness.h"

#include <librdkafka/rdkafka_mock.h>

/* 2023-07-30T00:00:00+08:00 */
#define T0_MS 1690646400000LL
#define MIN_MS 60000LL

/* ---- the active set replay implies ---- */

/* The active set after alerts[from..n): "rule:sensor" -> JSON of the pair's
 * last event, for the pairs whose last event is not `cleared`. */
typedef struct active {
        it_strs field, json;
        bool *cleared;
} active;

static active active_after(char *const *v, size_t n, size_t from) {
        active a = { 0 };
        a.cleared = calloc(n + 1, sizeof(bool));
        for (size_t i = from; i < n; i++) {
                char rule[80], sensor[80], ev[32], f[170];
                size_t j;
                it_json_str(v[i], "rule", rule, sizeof(rule));
                it_json_str(v[i], "sensor", sensor, sizeof(sensor));
                it_json_str(v[i], "event", ev, sizeof(ev));
                snprintf(f, sizeof(f), "%s:%s", rule, sensor);
                for (j = 0; j < a.field.n; j++)
                        if (!strcmp(a.field.v[j], f))
                                break;
                if (j == a.field.n) {
                        it_strs_add(&a.field, f, strlen(f));
                        it_strs_add(&a.json, v[i], strlen(v[i]));
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
        it_strs_free(&a->field);
        it_strs_free(&a->json);
        free(a->cleared);
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

/* A test's topics and its one config: redis is the port the daemon sends
 * alerts to, 0 for none; rules NULL for a rules directory of its own;
 * shards 0 for the default. */
static void env_init_shards(it_env *t, const char *name, int in_partitions, int redis, const char *rules, int shards) {
        it_env_init(t, name, in_partitions, rules, false);
        it_config_write(t, t->config, &(it_config) { .state_dir = t->state, .redis_port = redis, .shards = shards });
}

static void env_init(it_env *t, const char *name, int in_partitions, int redis, const char *rules) {
        env_init_shards(t, name, in_partitions, redis, rules, 0);
}

static it_proc start_daemon(const it_env *t, const char *log_name) {
        char log[600];
        it_proc d;

        snprintf(log, sizeof(log), "%s/%s", t->dir, log_name);
        it_daemon_start(&d, t->config, log, 30);
        return d;
}

/* A clean stop: exit 0 within the configured shutdown timeout (10 s). */
static void stop_daemon(it_proc *d) {
        it_daemon_stop(d, 11);
}

/* Polls r until it holds n messages; false (after saying so) when seconds
 * pass first, so the caller can still show what differs. */
static bool wait_count_soft(it_reader *r, it_proc *d, size_t n, double seconds) {
        double deadline = it_now() + seconds;

        while (r->value.n < n) {
                if (d)
                        it_daemon_check_alive(d);
                if (it_now() > deadline) {
                        fprintf(stderr, "%s: %zu messages after %.0f s, %zu expected\n", r->topic, r->value.n, seconds, n);
                        if (d)
                                it_daemon_log_tail(d);
                        return false;
                }
                it_reader_poll(r, 100);
        }
        return true;
}

static void wait_count(it_reader *r, it_proc *d, size_t n, double seconds) {
        if (!wait_count_soft(r, d, n, seconds))
                fail();
}

static void wait_xlen(const char *stream, it_proc *d, long long n, double seconds) {
        double deadline = it_now() + seconds;
        long long got;

        while ((got = it_redis_xlen(stream)) < n) {
                if (d)
                        it_daemon_check_alive(d);
                if (it_now() > deadline) {
                        fprintf(stderr, "%s: %lld entries after %.0f s, %lld expected\n", stream, got, seconds, n);
                        if (d)
                                it_daemon_log_tail(d);
                        fail();
                }
                it_nap_ms(50);
        }
}

/* ---- the tests ---- */

static void live_equals_replay(const char *name, int shards) {
        it_env t;
        it_input in;
        size_t rejected;
        it_reader alerts, dlq;

        IT_NEED_SERVERS();
        env_init_shards(&t, name, 4, it.redis_port, it.rules_dir, shards);
        it_simulate(&t, 21, &in);
        it_strs want = it_replay(&t, &in, in.line.n, "full", &rejected);
        assert_true(want.n >= 50);
        assert_true(rejected >= 10);

        it_produce_range(&t, &in, 0, in.line.n);
        it_proc d = start_daemon(&t, "daemon.log");
        it_reader_open(&alerts, t.alerts);
        if (wait_count_soft(&alerts, &d, want.n, 60))
                wait_xlen(t.stream, &d, (long long) want.n, 30);
        stop_daemon(&d);

        it_reader_drain(&alerts);
        it_assert_alerts_equal("Kafka alerts topic", IT_PER_SENSOR, &want, &alerts.value);

        /* What an operator's monitoring reads: nothing left to consume, every
         * alert and every rejection counted. */
        char path[600];
        snprintf(path, sizeof(path), "%s/metrics.prom", t.state);
        char *metrics = it_read_file(path, NULL);
        assert_non_null(strstr(metrics, "fenghuo_consumer_lag_messages 0\n"));
        assert_non_null(strstr(metrics, "fenghuo_alerts_in_flight 0\n"));
        unsigned long long total = 0, rej_total = 0, v;
        for (char *p = metrics; (p = strstr(p, "fenghuo_alerts_total{")); p++)
                if (sscanf(strchr(p, '}') + 1, "%llu", &v) == 1)
                        total += v;
        for (char *p = metrics; (p = strstr(p, "fenghuo_readings_rejected_total{")); p++)
                if (sscanf(strchr(p, '}') + 1, "%llu", &v) == 1)
                        rej_total += v;
        assert_int_equal(total, want.n);
        assert_int_equal(rej_total, rejected);
        free(metrics);

        it_strs stream = it_redis_stream(t.stream);
        it_assert_alerts_equal("Redis stream", IT_PER_SENSOR, &want, &stream);

        it_strs fields = { 0 }, values = { 0 };
        active act = active_after(want.v, want.n, 0);
        it_redis_hash(t.hash, &fields, &values);
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
        it_reader_open(&dlq, t.dlq);
        it_reader_drain(&dlq);
        assert_int_equal(dlq.value.n, rejected);

        active_free(&act);
        it_strs_free(&fields);
        it_strs_free(&values);
        it_strs_free(&stream);
        it_reader_close(&dlq);
        it_reader_close(&alerts);
        it_strs_free(&want);
        it_input_free(&in);
}

static void alerts_through_real_kafka_equal_replay_of_the_same_input(void **state) {
        (void) state;
        live_equals_replay("t1", 1);
}

/* Four partitions over three shards (one shard has two): each sensor's
 * state in the shard of its partition, the same alerts as replay, and the
 * health figures added up over the shards. */
static void alerts_at_three_shards_equal_replay_of_the_same_input(void **state) {
        (void) state;
        live_equals_replay("t1s", 3);
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
                /* The 61st reading of one gauge within 60 s (after 60 good
                 * ones, produced just before it). */
                { "rate_limited", "{\"sensor\":\"MY-RG-0002\",\"ts\":\"2023-07-30T00:00:30.500+08:00\",\"values\":{\"rain_mm\":0}}" },
        };
        enum { N = sizeof(bad) / sizeof(bad[0]) };
        char *text[N], key[32];
        it_env t;
        it_reader dlq, alerts;

        IT_NEED_SERVERS();
        env_init(&t, "t2", 1, 0, it.rules_dir);
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
        it_proc d = start_daemon(&t, "daemon.log");
        for (size_t i = 0; i < N; i++) {
                if (!strcmp(bad[i].reason, "rate_limited"))
                        for (int k = 0; k < 60; k++) {
                                char ok[160];
                                int n = snprintf(ok, sizeof(ok), "{\"sensor\":\"MY-RG-0002\",\"ts\":\"2023-07-30T00:00:%02d+08:00\","
                                                 "\"values\":{\"rain_mm\":0}}", k);
                                it_produce(t.topic[0], "MY-RG-0002", ok, (size_t) n);
                        }
                snprintf(key, sizeof(key), "bad-%zu", i);
                it_produce(t.topic[0], key, text[i], strlen(text[i]));
        }
        /* After all that, a good reading still alerts. */
        const char *good = "{\"sensor\":\"MY-RG-0001\",\"ts\":\"2023-07-30T00:00:00+08:00\",\"values\":{\"rain_mm\":120}}";
        it_produce(t.topic[0], "MY-RG-0001", good, strlen(good));
        it_flush(30000);

        it_reader_open(&alerts, t.alerts);
        it_reader_open(&dlq, t.dlq);
        wait_count(&alerts, &d, 1, 60);
        wait_count(&dlq, &d, N, 30);
        stop_daemon(&d);
        it_reader_drain(&dlq);
        it_reader_drain(&alerts);

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
        it_reader_close(&dlq);
        it_reader_close(&alerts);
}

static void produce_reading(const it_env *t, const char *sensor, int64_t ts, double rain) {
        char buf[200];
        snprintf(buf, sizeof(buf), "{\"sensor\":\"%s\",\"ts\":%lld,\"values\":{\"rain_mm\":%g}}", sensor,
                 (long long) ts, rain);
        it_produce(t->topic[0], sensor, buf, strlen(buf));
        it_flush(30000);
}

static void assert_alert(const char *json, const char *sensor, const char *event, const char *level, const char *value) {
        char s[80], e[32], l[32], want_value[64];
        it_json_str(json, "sensor", s, sizeof(s));
        it_json_str(json, "event", e, sizeof(e));
        it_json_str(json, "level", l, sizeof(l));
        snprintf(want_value, sizeof(want_value), "\"value\":%s,", value);
        if (strcmp(s, sensor) || strcmp(e, event) || strcmp(l, level) || !strstr(json, want_value)) {
                fprintf(stderr, "expected %s %s %s value %s, got %s\n", sensor, event, level, value, json);
                fail();
        }
}

static void sighup_with_a_broken_rule_file_keeps_the_old_rules_and_says_why(void **state) {
        char path[600], broken[600], want[700];
        it_env t;
        it_reader alerts;

        IT_NEED_SERVERS();
        env_init(&t, "t3", 1, 0, NULL);
        snprintf(path, sizeof(path), "%s/a.yaml", t.rules);
        it_write_file(path, "rules:\n"
                         "  - id: burst\n"
                         "    kind: rain\n"
                         "    levels:\n"
                         "      red: last(rain_mm) >= 50\n"
                         "    report: last(rain_mm)\n");
        it_proc d = start_daemon(&t, "daemon.log");
        it_reader_open(&alerts, t.alerts);
        produce_reading(&t, "MY-RG-0001", T0_MS, 60);
        wait_count(&alerts, &d, 1, 60);
        assert_alert(alerts.value.v[0], "MY-RG-0001", "raised", "red", "60");

        snprintf(broken, sizeof(broken), "%s/b.yaml", t.rules);
        it_write_file(broken, "rules:\n"
                           "  - id: broken\n"
                           "    kind: rain\n"
                           "    levels:\n"
                           "      red: summ(rain_mm, 3h) >= 1\n");
        it_daemon_signal(&d, SIGHUP);
        it_daemon_wait_log(&d, "reload refused", 1, 30);
        char *log = it_read_file_or_empty(d.log, NULL);
        snprintf(want, sizeof(want), "%s:5:12: ", broken);
        if (!strstr(log, want))
                it_daemon_log_tail(&d);
        assert_non_null(strstr(log, want));
        assert_non_null(strstr(log, "summ"));
        assert_null(strstr(log, "reloaded rules="));
        free(log);

        /* Still the old rule: below 50 clears, above raises again. */
        produce_reading(&t, "MY-RG-0001", T0_MS + 10 * MIN_MS, 10);
        produce_reading(&t, "MY-RG-0001", T0_MS + 20 * MIN_MS, 70);
        wait_count(&alerts, &d, 3, 30);
        stop_daemon(&d);
        it_reader_drain(&alerts);
        assert_int_equal(alerts.value.n, 3);
        assert_alert(alerts.value.v[1], "MY-RG-0001", "cleared", "none", "10");
        assert_alert(alerts.value.v[2], "MY-RG-0001", "raised", "red", "70");
        assert_non_null(strstr(alerts.value.v[2], "\"rule\":\"burst\""));
        it_reader_close(&alerts);
}

static void sighup_with_a_changed_threshold_changes_behaviour_without_losing_windows(void **state) {
        char path[600];
        it_env t;
        it_reader alerts;
        static const char *const rule =
                "rules:\n"
                "  - id: heavy\n"
                "    kind: rain\n"
                "    levels:\n"
                "      orange: sum(rain_mm, 3h) >= %d\n"
                "    report: sum(rain_mm, 3h)\n";
        char text[300];

        IT_NEED_SERVERS();
        env_init(&t, "t4", 1, 0, NULL);
        snprintf(path, sizeof(path), "%s/a.yaml", t.rules);
        snprintf(text, sizeof(text), rule, 50);
        it_write_file(path, text);
        it_proc d = start_daemon(&t, "daemon.log");
        it_reader_open(&alerts, t.alerts);

        /* 40 mm over 2 h: under 50, no alert. */
        for (int i = 0; i <= 4; i++)
                produce_reading(&t, "MY-RG-0002", T0_MS + i * 30 * MIN_MS, 8);
        /* One partition: once this sentinel's alert is out, the 40 mm are in. */
        produce_reading(&t, "MY-RG-0003", T0_MS, 60);
        wait_count(&alerts, &d, 1, 60);
        assert_alert(alerts.value.v[0], "MY-RG-0003", "raised", "orange", "60");

        snprintf(text, sizeof(text), rule, 30);
        it_write_file(path, text);
        it_daemon_signal(&d, SIGHUP);
        it_daemon_wait_log(&d, "reloaded rules=1", 1, 30);

        /* The rule changed: MY-RG-0003's alert is ended by the reload. */
        wait_count(&alerts, &d, 2, 30);
        assert_alert(alerts.value.v[1], "MY-RG-0003", "cleared", "none", "null");

        /* 41 >= 30 only if the 2 h of window survived the reload. */
        produce_reading(&t, "MY-RG-0002", T0_MS + 150 * MIN_MS, 1);
        wait_count(&alerts, &d, 3, 30);
        stop_daemon(&d);
        it_reader_drain(&alerts);
        assert_int_equal(alerts.value.n, 3);
        assert_alert(alerts.value.v[2], "MY-RG-0002", "raised", "orange", "41");
        it_reader_close(&alerts);
}

/* A reload that changes one rule and removes another ends their open alerts
 * with a `cleared` event saying why, in Kafka and in Redis (the active hash
 * keeps no stale id), and a crash right after the reload neither loses nor
 * repeats those events. */
static void sighup_ends_the_alerts_of_a_changed_and_a_removed_rule_everywhere(void **state) {
        char a_path[600], b_path[600], id_heavy[128], id_burst[128], id[128];
        it_env t;
        it_reader alerts;
        it_strs fields = { 0 }, values = { 0 };
        static const char *const heavy =
                "rules:\n"
                "  - id: heavy\n"
                "    kind: rain\n"
                "    levels:\n"
                "      orange: last(rain_mm) >= %d\n"
                "    report: last(rain_mm)\n";
        char text[300];

        IT_NEED_SERVERS();
        /* One partition, two shards: one has nothing to do. */
        env_init_shards(&t, "t9", 1, it.redis_port, NULL, 2);
        snprintf(a_path, sizeof(a_path), "%s/a.yaml", t.rules);
        snprintf(b_path, sizeof(b_path), "%s/b.yaml", t.rules);
        snprintf(text, sizeof(text), heavy, 50);
        it_write_file(a_path, text);
        it_write_file(b_path, "rules:\n"
                              "  - id: burst\n"
                              "    kind: rain\n"
                              "    levels:\n"
                              "      red: last(rain_mm) >= 80\n"
                              "    report: last(rain_mm)\n");
        it_proc d = start_daemon(&t, "daemon-1.log");
        it_reader_open(&alerts, t.alerts);
        produce_reading(&t, "MY-RG-0001", T0_MS, 90);
        wait_count(&alerts, &d, 2, 60);
        assert_alert(alerts.value.v[0], "MY-RG-0001", "raised", "red", "90");
        assert_alert(alerts.value.v[1], "MY-RG-0001", "raised", "orange", "90");
        it_json_str(alerts.value.v[0], "alert_id", id_burst, sizeof(id_burst));
        it_json_str(alerts.value.v[1], "alert_id", id_heavy, sizeof(id_heavy));
        wait_xlen(t.stream, &d, 2, 30);
        it_redis_hash(t.hash, &fields, &values);
        assert_int_equal(fields.n, 2);
        it_strs_free(&fields);
        it_strs_free(&values);

        /* heavy's threshold changes, burst goes; killed as soon as the
         * reload is done, so its events may or may not be out yet. */
        snprintf(text, sizeof(text), heavy, 60);
        it_write_file(a_path, text);
        assert_int_equal(unlink(b_path), 0);
        it_daemon_signal(&d, SIGHUP);
        it_daemon_wait_log(&d, "reloaded rules=1 ", 1, 30);
        it_daemon_signal(&d, SIGKILL);
        assert_int_equal(it_daemon_wait_exit(&d, 10, NULL), 128 + SIGKILL);
        d = start_daemon(&t, "daemon-2.log");

        wait_count(&alerts, &d, 4, 60);
        assert_alert(alerts.value.v[2], "MY-RG-0001", "cleared", "none", "null");
        it_json_str(alerts.value.v[2], "alert_id", id, sizeof(id));
        assert_string_equal(id, id_burst);
        assert_non_null(strstr(alerts.value.v[2], "\"previous\":\"red\""));
        assert_non_null(strstr(alerts.value.v[2], "\"reason\":\"rule_removed\""));
        assert_alert(alerts.value.v[3], "MY-RG-0001", "cleared", "none", "null");
        it_json_str(alerts.value.v[3], "alert_id", id, sizeof(id));
        assert_string_equal(id, id_heavy);
        assert_non_null(strstr(alerts.value.v[3], "\"reason\":\"rule_changed\""));
        wait_xlen(t.stream, &d, 4, 30);
        it_redis_hash(t.hash, &fields, &values);
        assert_int_equal(fields.n, 0);

        /* The changed rule raises anew, with a new id; the hash has it alone. */
        produce_reading(&t, "MY-RG-0001", T0_MS + 10 * MIN_MS, 90);
        wait_count(&alerts, &d, 5, 30);
        assert_alert(alerts.value.v[4], "MY-RG-0001", "raised", "orange", "90");
        it_json_str(alerts.value.v[4], "alert_id", id, sizeof(id));
        assert_string_not_equal(id, id_heavy);
        wait_xlen(t.stream, &d, 5, 30);
        stop_daemon(&d);
        it_reader_drain(&alerts);
        assert_int_equal(alerts.value.n, 5);
        assert_int_equal(it_redis_xlen(t.stream), 5);
        it_redis_hash(t.hash, &fields, &values);
        assert_int_equal(fields.n, 1);
        assert_string_equal(fields.v[0], "heavy:MY-RG-0001");
        assert_non_null(strstr(values.v[0], id));
        it_strs_free(&fields);
        it_strs_free(&values);
        it_reader_close(&alerts);
}

static void sigterm_mid_stream_then_restart_gives_exactly_the_alerts_of_one_run(void **state) {
        it_env t;
        it_input in;
        it_reader alerts;
        bool stopped = false;
        double signalled = 0, exited = 0;
        int code = -1;

        IT_NEED_SERVERS();
        env_init_shards(&t, "t5", 4, 0, it.rules_dir, 2);
        it_simulate(&t, 22, &in);
        it_strs want = it_replay(&t, &in, in.line.n, "full", NULL);
        assert_true(want.n >= 50);

        it_proc d = start_daemon(&t, "daemon-1.log");
        it_reader_open(&alerts, t.alerts);
        /* Paced, so the stop lands while readings are still coming. */
        size_t chunk = 200;
        for (size_t i = 0; i < in.line.n; i += chunk) {
                size_t end = i + chunk < in.line.n ? i + chunk : in.line.n;
                for (size_t j = i; j < end; j++)
                        it_produce_line(&t, in.line.v[j]);
                rd_kafka_flush(it.producer, 5000);
                it_reader_poll(&alerts, 40);
                if (stopped && d.pid && it_daemon_poll(&d, &code) == 0)
                        exited = it_now();
                if (!stopped && alerts.value.n >= want.n / 3) {
                        it_daemon_signal(&d, SIGTERM);
                        signalled = it_now();
                        stopped = true;
                }
        }
        it_flush(30000);
        if (!stopped) {
                wait_count(&alerts, &d, want.n / 3, 60);
                it_daemon_signal(&d, SIGTERM);
                signalled = it_now();
        }
        if (d.pid) {
                code = it_daemon_wait_exit(&d, 15, NULL);
                exited = it_now();
        }
        double took = exited - signalled;
        if (code != 0)
                it_daemon_log_tail(&d);
        assert_int_equal(code, 0);
        assert_true(took < 11);
        it_daemon_wait_log(&d, "state saved to", 1, 1);
        it_reader_drain(&alerts);
        size_t first_run = alerts.value.n;
        fprintf(stderr, "first run: %zu of %zu alerts; exited %.2f s after SIGTERM\n", first_run, want.n, took);
        assert_true(first_run < want.n);

        it_proc d2 = start_daemon(&t, "daemon-2.log");
        it_daemon_wait_log(&d2, "state restored from", 1, 1);
        wait_count_soft(&alerts, &d2, want.n, 60);
        stop_daemon(&d2);
        it_reader_drain(&alerts);
        it_assert_alerts_equal("Kafka alerts topic over two runs", IT_PER_SENSOR, &want, &alerts.value);

        it_reader_close(&alerts);
        it_strs_free(&want);
        it_input_free(&in);
}

/* The config's stats_interval, made 1 s so the figures can be watched. */
static void stats_every_second(const it_env *t) {
        char *text = it_read_file(t->config, NULL);
        char *p = strstr(text, "stats_interval: 0s");
        assert_non_null(p);
        p[16] = '1';
        it_write_file(t->config, text);
        free(text);
}

/* Every sample line's metric has a # TYPE (and # HELP) line before it. */
static void assert_metrics_typed(const char *text) {
        it_strs lines = it_strs_lines(text);
        for (size_t i = 0; i < lines.n; i++) {
                char name[128], want[200];
                if (lines.v[i][0] == '#')
                        continue;
                size_t n = strcspn(lines.v[i], "{ ");
                assert_true(n < sizeof(name));
                memcpy(name, lines.v[i], n);
                name[n] = '\0';
                snprintf(want, sizeof(want), "# TYPE %s %s\n", name,
                         strstr(name, "_total") ? "counter" : "gauge");
                if (!strstr(text, want))
                        fprintf(stderr, "no \"%s\" in:\n%s\n", want, text);
                assert_non_null(strstr(text, want));
                snprintf(want, sizeof(want), "# HELP %s ", name);
                assert_non_null(strstr(text, want));
        }
        it_strs_free(&lines);
}

static void health_figures_stay_true_across_a_reload_and_a_restart(void **state) {
        char path[600], metrics[600], log2[600];
        it_env t;
        it_reader alerts;
        struct stat st;

        IT_NEED_SERVERS();
        env_init(&t, "t7", 1, 0, NULL);
        stats_every_second(&t);
        snprintf(metrics, sizeof(metrics), "%s/metrics.prom", t.state);
        snprintf(path, sizeof(path), "%s/a.yaml", t.rules);
        it_write_file(path, "rules:\n  - id: heavy\n    kind: rain\n    levels:\n      orange: sum(rain_mm, 3h) >= 50\n"
                            "    report: sum(rain_mm, 3h)\n");
        /* The unit's umask: the metrics file must still be readable by
         * node_exporter, another user. */
        mode_t old_mask = umask(077);
        it_proc d = start_daemon(&t, "daemon.log");
        umask(old_mask);
        it_reader_open(&alerts, t.alerts);
        for (int i = 0; i <= 4; i++)
                produce_reading(&t, "MY-RG-0002", T0_MS + i * 30 * MIN_MS, 8);
        produce_reading(&t, "MY-RG-0003", T0_MS, 60);
        wait_count(&alerts, &d, 1, 60);
        it_daemon_wait_log(&d, "stats consumed=6 accepted=6 ", 1, 30);

        /* A good reload: the counters go on from where they were (lines
         * with 0 before the readings came are the start's). */
        size_t zero_accepted = it_file_count(d.log, "accepted=0 "), zero_alerts = it_file_count(d.log, " alerts=0 ");
        it_daemon_signal(&d, SIGHUP);
        it_daemon_wait_log(&d, "reloaded rules=1", 1, 30);
        size_t before = it_file_count(d.log, "stats consumed=");
        it_daemon_wait_log(&d, "stats consumed=", before + 2, 30);
        assert_int_equal(it_file_count(d.log, "accepted=0 "), zero_accepted);
        assert_int_equal(it_file_count(d.log, " alerts=0 "), zero_alerts);
        char *text = it_read_file(metrics, NULL);
        assert_non_null(strstr(text, "\nfenghuo_readings_accepted_total 6\n"));
        assert_non_null(strstr(text, "\nfenghuo_alerts_total{event=\"raised\"} 1\n"));
        assert_non_null(strstr(text, "\nfenghuo_readings_consumed_total 6\n"));
        assert_metrics_typed(text);
        free(text);
        assert_int_equal(stat(metrics, &st), 0);
        assert_int_equal(st.st_mode & 0777, 0644);
        stop_daemon(&d);

        /* A restart with nothing new: everything is committed, so the lag
         * is 0, never the partition's whole length. */
        d = start_daemon(&t, "daemon-2.log");
        snprintf(log2, sizeof(log2), "%s/daemon-2.log", t.dir);
        it_daemon_wait_log(&d, " lag=0 behind_s", 1, 30);
        assert_int_equal(it_file_count(log2, " lag=6 "), 0);
        text = it_read_file(metrics, NULL);
        assert_non_null(strstr(text, "\nfenghuo_consumer_lag_messages 0\n"));
        free(text);
        stop_daemon(&d);
        it_reader_close(&alerts);
}

static void redis_down_for_30_seconds_loses_no_alert_and_kafka_is_not_held_up(void **state) {
        it_env t;
        it_input in;
        it_reader alerts;

        IT_NEED_SERVERS();
        relay_start(it.redis_port);
        env_init_shards(&t, "t6", 4, rl.port, it.rules_dir, 3);
        it_simulate(&t, 23, &in);
        size_t n1 = in.line.n / 4, n2 = in.line.n * 3 / 4;
        it_strs want = it_replay(&t, &in, in.line.n, "full", NULL);
        it_strs want1 = it_replay(&t, &in, n1, "p1", NULL);
        it_strs want2 = it_replay(&t, &in, n2, "p2", NULL);
        size_t c1 = want1.n, c2 = want2.n;
        /* Alerts come out at readings, so a prefix's alerts are a prefix. */
        for (size_t i = 0; i < c2; i++)
                assert_string_equal(want2.v[i], want.v[i]);
        for (size_t i = 0; i < c1; i++)
                assert_string_equal(want1.v[i], want.v[i]);
        assert_true(c1 >= 5);
        assert_true(c2 - c1 >= 20);

        it_proc d = start_daemon(&t, "daemon.log");
        it_reader_open(&alerts, t.alerts);
        it_produce_range(&t, &in, 0, n1);
        wait_count(&alerts, &d, c1, 60);
        /* Quiet point: everything so far is in Redis, nothing in flight. */
        wait_xlen(t.stream, &d, (long long) c1, 30);

        assert_true(relay_command('D'));
        it_redis_stop();
        double down = it_now();
        assert_int_equal(it_redis_xlen(t.stream), -1);

        /* Half the day's readings over 30 s while Redis is away. */
        size_t steps = 60, mid_count = 0;
        for (size_t s = 0; s < steps; s++) {
                size_t from = n1 + (n2 - n1) * s / steps, to = n1 + (n2 - n1) * (s + 1) / steps;
                for (size_t j = from; j < to; j++)
                        it_produce_line(&t, in.line.v[j]);
                rd_kafka_poll(it.producer, 0);
                double until = down + 30.0 * (double) (s + 1) / (double) steps;
                while (it_now() < until)
                        it_reader_poll(&alerts, 20);
                if (s == steps / 2)
                        mid_count = alerts.value.n;
                it_daemon_check_alive(&d);
        }
        it_flush(30000);
        /* Kafka kept up without Redis: every alert so far is there. */
        wait_count(&alerts, &d, c2, 10);
        double down_for = it_now() - down;
        fprintf(stderr, "Redis down %.1f s: Kafka alerts %zu -> %zu (midway %zu)\n", down_for, c1, alerts.value.n, mid_count);
        assert_true(mid_count > c1);
        assert_true(down_for >= 30);
        assert_int_equal(it_redis_xlen(t.stream), -1);

        int old_port = it.redis_port;
        it_redis_start();
        if (it.redis_port != old_port)
                fprintf(stderr, "redis.sh restarted Redis on port %d, not %d (the relay follows it)\n", it.redis_port,
                        old_port);
        rl.target = it.redis_port;
        assert_true(relay_command('U'));
        it_produce_range(&t, &in, n2, in.line.n);
        /* The restarted server is empty (no persistence): it must get every
         * alert from the stop on, from the backlog and after. */
        if (wait_count_soft(&alerts, &d, want.n, 60))
                wait_xlen(t.stream, &d, (long long) (want.n - c1), 30);
        stop_daemon(&d);
        char *log = it_read_file_or_empty(d.log, NULL);
        assert_null(strstr(log, "consumption paused"));
        free(log);

        it_reader_drain(&alerts);
        it_assert_alerts_equal("Kafka alerts topic", IT_PER_SENSOR, &want, &alerts.value);
        /* Nothing was in flight when Redis stopped, and a resend to a fresh
         * server cannot meet an earlier copy: so exactly once, in order. */
        it_strs stream = it_redis_stream(t.stream);
        it_strs since_stop = { .v = want.v + c1, .n = want.n - c1 };  /* a view into want */
        it_assert_alerts_equal("Redis stream after the restart", IT_PER_SENSOR, &since_stop, &stream);

        /* The hash: no stale entry, and every pair changed since the stop
         * shows its latest event. Pairs last changed before the stop were
         * lost with the server's memory: the daemon does not rebuild the
         * hash (fh_redis_sync_active) when Redis comes back. */
        it_strs fields = { 0 }, values = { 0 };
        active all = active_after(want.v, want.n, 0), since = active_after(want.v, want.n, c1);
        it_redis_hash(t.hash, &fields, &values);
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
        it_strs_free(&fields);
        it_strs_free(&values);
        it_strs_free(&stream);
        it_reader_close(&alerts);
        it_strs_free(&want);
        it_strs_free(&want1);
        it_strs_free(&want2);
        it_input_free(&in);
}

/* ---- fixtures ---- */

static int test_teardown(void **state) {
        /* The daemons first: a failed test's daemon may still use the relay. */
        it_daemon_kill_all();
        relay_stop();
        return it_test_teardown(state);
}

/* ---- flow control on readings held uncommitted ---- */

/* A value of the metrics file, -1 while it has none. */
static long long metric(const char *path, const char *name) {
        char *text = it_read_file_or_empty(path, NULL), pat[128];
        long long v = -1;

        snprintf(pat, sizeof(pat), "\n%s ", name);
        char *p = strstr(text, pat);
        if (p)
                v = strtoll(p + strlen(pat), NULL, 10);
        free(text);
        return v;
}

static rd_kafka_t *mock_client(const char *bootstraps, rd_kafka_type_t type) {
        rd_kafka_conf_t *conf = rd_kafka_conf_new();
        char err[512];

        it_kafka_conf_set(conf, "bootstrap.servers", bootstraps);
        it_kafka_conf_set(conf, "log_level", "2");
        if (type == RD_KAFKA_CONSUMER) {
                it_kafka_conf_set(conf, "group.id", "pending-reader");
                it_kafka_conf_set(conf, "enable.auto.commit", "false");
        }
        rd_kafka_t *rk = rd_kafka_new(type, conf, err, sizeof(err));
        assert_non_null(rk);
        if (type == RD_KAFKA_CONSUMER)
                rd_kafka_poll_set_consumer(rk);
        return rk;
}

/* One alert the alerts topic refuses (the broker says the topic is not
 * authorised, as with a missing ACL) holds back every later reading of its
 * partition. Consumption must pause at kafka.max_pending_readings instead
 * of holding ever more readings, and once the topic takes writes again the
 * alert goes out once and every reading is processed and committed. The
 * fault is injected with librdkafka's mock cluster, which the daemon reaches
 * over TCP like any broker. */
static void an_unwritable_alerts_topic_pauses_at_the_pending_bound_and_loses_nothing(void **state) {
        char dir[400], rules[450], path[500], metrics[500], log[500], config[500], err[512];
        const int n = 20000, bound = 1000;

        IT_NEED_SERVERS();
        snprintf(dir, sizeof(dir), "%s/pending", it.tmpdir);
        snprintf(rules, sizeof(rules), "%s/rules", dir);
        assert_int_equal(mkdir(dir, 0755), 0);
        assert_int_equal(mkdir(rules, 0755), 0);
        snprintf(path, sizeof(path), "%s/a.yaml", rules);
        it_write_file(path, "rules:\n"
                            "  - id: burst\n"
                            "    kind: rain\n"
                            "    levels:\n"
                            "      red: last(rain_mm) >= 50\n"
                            "    report: last(rain_mm)\n");

        rd_kafka_conf_t *hconf = rd_kafka_conf_new();
        it_kafka_conf_set(hconf, "log_level", "2");
        rd_kafka_t *host = rd_kafka_new(RD_KAFKA_PRODUCER, hconf, err, sizeof(err));
        assert_non_null(host);
        rd_kafka_mock_cluster_t *mc = rd_kafka_mock_cluster_new(host, 1);
        assert_non_null(mc);
        const char *bs = rd_kafka_mock_cluster_bootstraps(mc);
        assert_int_equal(rd_kafka_mock_topic_create(mc, "pending.rain", 1, 1), RD_KAFKA_RESP_ERR_NO_ERROR);
        assert_int_equal(rd_kafka_mock_topic_create(mc, "pending.alerts", 1, 1), RD_KAFKA_RESP_ERR_NO_ERROR);
        rd_kafka_mock_topic_set_error(mc, "pending.alerts", RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED);

        snprintf(metrics, sizeof(metrics), "%s/metrics.prom", dir);
        snprintf(config, sizeof(config), "%s/fenghuo.yaml", dir);
        FILE *f = fopen(config, "we");
        assert_non_null(f);
        fprintf(f,
                "rules: \"%s\"\nstations: \"%s\"\nmetrics_file: \"%s\"\nstats_interval: 1s\n"
                "log_level: info\nshutdown_timeout: 10s\n"
                "kafka:\n  brokers: \"%s\"\n  group_id: pending\n  alerts_topic: pending.alerts\n"
                "  topics:\n    rain: pending.rain\n  max_pending_readings: %d\n"
                "  properties:\n    log_level: \"2\"\n"
                /* So that the producer sees the topic writable again soon. */
                "  producer_properties:\n    topic.metadata.refresh.interval.ms: \"1000\"\n",
                rules, it.stations, metrics, bs, bound);
        assert_int_equal(fclose(f), 0);
        snprintf(log, sizeof(log), "%s/daemon.log", dir);
        it_proc d;
        it_daemon_start(&d, config, log, 30);

        /* The first reading raises an alert that cannot be written; the
         * rest raise none. One sensor, one partition: all of them wait
         * behind that alert. */
        rd_kafka_t *p = mock_client(bs, RD_KAFKA_PRODUCER);
        char buf[200];
        for (int i = 0; i <= n; i++) {
                const char *sensor = i == 0 ? "MY-RG-0001" : "MY-RG-0002";
                snprintf(buf, sizeof(buf), "{\"sensor\":\"%s\",\"ts\":%lld,\"values\":{\"rain_mm\":%d}}", sensor,
                         (long long) (T0_MS + i * MIN_MS), i == 0 ? 60 : 1);
                while (rd_kafka_producev(p, RD_KAFKA_V_TOPIC("pending.rain"), RD_KAFKA_V_KEY(sensor, strlen(sensor)),
                                         RD_KAFKA_V_VALUE(buf, strlen(buf)), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                         RD_KAFKA_V_END) == RD_KAFKA_RESP_ERR__QUEUE_FULL)
                        rd_kafka_poll(p, 10);
        }
        assert_int_equal(rd_kafka_flush(p, 30000), RD_KAFKA_RESP_ERR_NO_ERROR);

        /* It pauses, and stays within the bound (plus the batch in hand
         * when it noticed) for as long as the topic refuses. */
        it_daemon_wait_log(&d, "consumption paused", 1, 60);
        double until = it_now() + 4;
        long long most = 0;
        while (it_now() < until) {
                it_daemon_check_alive(&d);
                long long k = metric(metrics, "fenghuo_readings_pending");
                if (k > most)
                        most = k;
                it_nap_ms(100);
        }
        long long consumed = metric(metrics, "fenghuo_readings_consumed_total");
        fprintf(stderr, "while the alerts topic refused: at most %lld readings pending (bound %d), %lld of %d consumed\n",
                most, bound, consumed, n + 1);
        assert_true(most > 0 && most <= bound + 256);
        assert_true(consumed < n + 1);
        assert_int_equal(metric(metrics, "fenghuo_consumption_paused"), 1);

        /* The topic takes writes again: the alert goes out, consumption
         * resumes and gets through everything. */
        rd_kafka_mock_topic_set_error(mc, "pending.alerts", RD_KAFKA_RESP_ERR_NO_ERROR);
        it_daemon_wait_log(&d, "consumption resumed", 1, 60);
        double deadline = it_now() + 60;
        while (metric(metrics, "fenghuo_readings_consumed_total") < n + 1 ||
               metric(metrics, "fenghuo_readings_pending") != 0) {
                it_daemon_check_alive(&d);
                assert_true(it_now() < deadline);
                it_nap_ms(200);
        }
        it_daemon_stop(&d, 15);
        assert_int_equal(metric(metrics, "fenghuo_readings_consumed_total"), n + 1);

        /* Exactly the one alert, and the group committed every reading. */
        rd_kafka_t *c = mock_client(bs, RD_KAFKA_CONSUMER);
        rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
        rd_kafka_topic_partition_list_add(l, "pending.alerts", 0)->offset = RD_KAFKA_OFFSET_BEGINNING;
        assert_int_equal(rd_kafka_assign(c, l), RD_KAFKA_RESP_ERR_NO_ERROR);
        rd_kafka_topic_partition_list_destroy(l);
        it_strs got = { 0 };
        deadline = it_now() + 10;
        while (it_now() < deadline) {
                rd_kafka_message_t *m = rd_kafka_consumer_poll(c, 100);
                if (m && !m->err)
                        it_strs_add(&got, m->payload, m->len);
                if (m)
                        rd_kafka_message_destroy(m);
                if (got.n >= 1 && it_now() > deadline - 8)
                        break;
        }
        assert_int_equal(got.n, 1);
        assert_alert(got.v[0], "MY-RG-0001", "raised", "red", "60");
        it_strs_free(&got);
        rd_kafka_consumer_close(c);
        rd_kafka_destroy(c);

        rd_kafka_conf_t *gconf = rd_kafka_conf_new();
        it_kafka_conf_set(gconf, "bootstrap.servers", bs);
        it_kafka_conf_set(gconf, "group.id", "pending");
        it_kafka_conf_set(gconf, "log_level", "2");
        rd_kafka_t *g = rd_kafka_new(RD_KAFKA_CONSUMER, gconf, err, sizeof(err));
        assert_non_null(g);
        l = rd_kafka_topic_partition_list_new(1);
        rd_kafka_topic_partition_list_add(l, "pending.rain", 0);
        assert_int_equal(rd_kafka_committed(g, l, 10000), RD_KAFKA_RESP_ERR_NO_ERROR);
        assert_int_equal(l->elems[0].offset, n + 1);
        rd_kafka_topic_partition_list_destroy(l);
        rd_kafka_destroy(g);

        rd_kafka_destroy(p);
        rd_kafka_mock_cluster_destroy(mc);
        rd_kafka_destroy(host);
}

static int setup(void **state) {
        return it_servers_setup("fenghuo-it", false);
}

static int teardown(void **state) {
        return it_servers_teardown();
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(alerts_through_real_kafka_equal_replay_of_the_same_input,
                                                it_test_setup, test_teardown),
                cmocka_unit_test_setup_teardown(alerts_at_three_shards_equal_replay_of_the_same_input,
                                                it_test_setup, test_teardown),
                cmocka_unit_test_setup_teardown(malformed_messages_land_in_the_dead_letter_topic_with_their_reason,
                                                it_test_setup, test_teardown),
                cmocka_unit_test_setup_teardown(sighup_with_a_broken_rule_file_keeps_the_old_rules_and_says_why,
                                                it_test_setup, test_teardown),
                cmocka_unit_test_setup_teardown(sighup_with_a_changed_threshold_changes_behaviour_without_losing_windows,
                                                it_test_setup, test_teardown),
                cmocka_unit_test_setup_teardown(sighup_ends_the_alerts_of_a_changed_and_a_removed_rule_everywhere,
                                                it_test_setup, test_teardown),
                cmocka_unit_test_setup_teardown(sigterm_mid_stream_then_restart_gives_exactly_the_alerts_of_one_run,
                                                it_test_setup, test_teardown),
                cmocka_unit_test_setup_teardown(redis_down_for_30_seconds_loses_no_alert_and_kafka_is_not_held_up,
                                                it_test_setup, test_teardown),
                cmocka_unit_test_setup_teardown(health_figures_stay_true_across_a_reload_and_a_restart,
                                                it_test_setup, test_teardown),
                cmocka_unit_test_setup_teardown(an_unwritable_alerts_topic_pauses_at_the_pending_bound_and_loses_nothing,
                                                it_test_setup, test_teardown),
        };
        const char *filter = getenv("FENGHUO_TEST_FILTER");
        if (filter)
                cmocka_set_test_filter(filter);
        return cmocka_run_group_tests(tests, setup, teardown);
}
