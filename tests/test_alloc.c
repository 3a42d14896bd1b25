/* The hot path allocates nothing per reading: once the windows of every
 * sensor are full, parsing a reading, ingesting it and formatting the
 * alerts it raises take no memory from malloc, and an alert's payload,
 * shared by every sink, is one allocation. malloc, calloc, realloc and the
 * strdups are wrapped at link time (-Wl,--wrap, tests/meson.build), so
 * what is counted is fenghuo's own code: libc's internals and the shared
 * libraries are not. The shipped rules and the Miyun registry, fed a
 * simulated storm. SRCDIR (the source tree) comes from meson. */
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <stdatomic.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>
#include <cmocka.h>

#include "fenghuo/buf.h"
#include "fenghuo/engine.h"
#include "fenghuo/reading.h"
#include "fenghuo/simulate.h"
#include "daemon.h"
#include "payload.h"

/* Counted on every thread: the daemon's engine may run on threads of its
 * own. librdkafka's, libuv's and hiredis's threads and calls go to libc's
 * malloc directly, not through these wrappers. */
static atomic_bool counting;
static atomic_ulong allocations;

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t m);
void *__real_realloc(void *p, size_t n);
char *__real_strdup(const char *s);
char *__real_strndup(const char *s, size_t n);
void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t n, size_t m);
void *__wrap_realloc(void *p, size_t n);
char *__wrap_strdup(const char *s);
char *__wrap_strndup(const char *s, size_t n);

void *__wrap_malloc(size_t n) {
        if (atomic_load_explicit(&counting, memory_order_relaxed))
                atomic_fetch_add_explicit(&allocations, 1, memory_order_relaxed);
        return __real_malloc(n);
}

void *__wrap_calloc(size_t n, size_t m) {
        if (atomic_load_explicit(&counting, memory_order_relaxed))
                atomic_fetch_add_explicit(&allocations, 1, memory_order_relaxed);
        return __real_calloc(n, m);
}

void *__wrap_realloc(void *p, size_t n) {
        if (atomic_load_explicit(&counting, memory_order_relaxed))
                atomic_fetch_add_explicit(&allocations, 1, memory_order_relaxed);
        return __real_realloc(p, n);
}

char *__wrap_strdup(const char *s) {
        if (atomic_load_explicit(&counting, memory_order_relaxed))
                atomic_fetch_add_explicit(&allocations, 1, memory_order_relaxed);
        return __real_strdup(s);
}

char *__wrap_strndup(const char *s, size_t n) {
        if (atomic_load_explicit(&counting, memory_order_relaxed))
                atomic_fetch_add_explicit(&allocations, 1, memory_order_relaxed);
        return __real_strndup(s, n);
}

static char *read_file(const char *path, size_t *ret_len) {
        FILE *f = fopen(path, "rb");
        fh_buf b = FH_BUF_NULL;
        char chunk[4096];
        size_t n;

        if (!f)
                fail_msg("cannot open %s", path);
        while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
                fh_buf_append(&b, chunk, n);
        fclose(f);
        *ret_len = b.len;
        return b.data ? b.data : fh_strdup("");
}

/* The shipped rules (every .yaml file in rules/) over the Miyun registry. */
static fh_engine *shipped_engine(void) {
        const char *src = getenv("SRCDIR");
        char path[4096];
        fh_diags d = FH_DIAGS_NULL;
        fh_ruleset *rs;
        fh_registry *reg;
        fh_engine *e;
        struct dirent **names;
        size_t len;
        char *text;
        int n;

        assert_non_null(src);
        assert_int_equal(fh_ruleset_new(&rs), 0);
        snprintf(path, sizeof(path), "%s/rules", src);
        n = scandir(path, &names, NULL, alphasort);
        assert_true(n > 0);
        for (int i = 0; i < n; i++) {
                size_t l = strlen(names[i]->d_name);
                if (l > 5 && !strcmp(names[i]->d_name + l - 5, ".yaml")) {
                        snprintf(path, sizeof(path), "%s/rules/%s", src, names[i]->d_name);
                        text = read_file(path, &len);
                        assert_int_equal(fh_ruleset_parse(rs, path, text, len, &d), 0);
                        free(text);
                }
                free(names[i]);
        }
        free(names);
        assert_int_equal(fh_ruleset_finish(rs, &d), 0);
        snprintf(path, sizeof(path), "%s/stations/miyun.csv", src);
        text = read_file(path, &len);
        assert_int_equal(fh_registry_parse(path, text, len, &reg, &d), 0);
        free(text);
        assert_int_equal(fh_engine_new(&e, rs, reg, NULL, &d), 0);
        fh_diags_clear(&d);
        return e;
}

typedef struct lines {
        char **v;
        size_t *len;
        size_t n, cap;
} lines;

static int keep_line(void *userdata, const char *line, size_t len) {
        lines *l = userdata;

        if (l->n == l->cap) {
                l->cap = l->cap ? 2 * l->cap : 4096;
                l->v = fh_realloc(l->v, l->cap * sizeof(*l->v));
                l->len = fh_realloc(l->len, l->cap * sizeof(*l->len));
        }
        l->v[l->n] = fh_strndup(line, len);
        l->len[l->n++] = len;
        return 0;
}

typedef struct sink {
        const fh_engine *e;
        fh_buf json;             /* reused for every alert, as the daemon's */
        unsigned long alerts;
} sink;

static void format_alert(void *userdata, const fh_alert *a) {
        sink *s = userdata;

        fh_buf_reset(&s->json);
        fh_alert_to_json(s->e, a, &s->json);
        s->alerts++;
}

/* Two simulated days at 5-minute readings (a storm in them): the first
 * fills every window (the longest is 12 h), the second is counted. */
static void readings_allocate_nothing_once_the_windows_are_full(void **state) {
        fh_engine *e = shipped_engine();
        sink s = { .e = e };
        lines l = { 0 };
        fh_sim_options opt = {
                .seed = 7, .start_ms = 1690560000000LL, .duration_ms = 48 * 3600000LL,
                .step_ms = 5 * 60000LL, .tz_offset_min = 480, .storm_scale = 1.0,
        };
        unsigned long accepted = 0, alerts_warm = 0;

        assert_int_equal(fh_simulate(fh_engine_registry(e), &opt, keep_line, &l), 0);
        fh_engine_set_alert_cb(e, format_alert, &s);
        for (size_t i = 0; i < l.n; i++) {
                fh_reading r;
                char why[256];

                if (i == l.n / 2) {
                        alerts_warm = s.alerts;
                        atomic_store(&allocations, 0);
                        atomic_store(&counting, true);
                }
                if (fh_reading_parse(l.v[i], l.len[i], &r, why, sizeof(why)) == FH_REJECT_NONE &&
                    fh_outcome_reject(fh_engine_ingest(e, &r)) == FH_REJECT_NONE && i >= l.n / 2)
                        accepted++;
        }
        atomic_store(&counting, false);
        print_message("%lu readings and %lu alerts after warm-up: %lu allocations\n", accepted,
                      s.alerts - alerts_warm, atomic_load(&allocations));
        assert_true(accepted > 5000);
        assert_true(s.alerts > alerts_warm);
        assert_int_equal(atomic_load(&allocations), 0);

        for (size_t i = 0; i < l.n; i++)
                free(l.v[i]);
        free(l.v);
        free(l.len);
        fh_buf_free(&s.json);
        fh_engine_free(e);
}

typedef struct payloads {
        const fh_engine *e;
        fh_buf json;
        fh_payload *p;           /* of the first alert */
        char key[512], field[256];
        unsigned long allocations;
} payloads;

static void keep_payload(void *userdata, const fh_alert *a) {
        payloads *ps = userdata;

        if (ps->p)
                return;
        fh_buf_reset(&ps->json);
        fh_alert_to_json(ps->e, a, &ps->json);
        assert_int_equal(fh_alert_key(a, ps->key, sizeof(ps->key)), 0);
        snprintf(ps->field, sizeof(ps->field), "%s:%s", a->rule->id, a->station->id);
        atomic_store(&allocations, 0);
        atomic_store(&counting, true);
        ps->p = fh_payload_alert(a, ps->json.data, ps->json.len);
        atomic_store(&counting, false);
        ps->allocations = atomic_load(&allocations);
}

/* The bytes every sink and checkpoint share: one allocation, the JSON as
 * formatted, and beside it the strings the sinks need. */
static void an_alert_payload_is_one_allocation(void **state) {
        fh_engine *e = shipped_engine();
        payloads ps = { .e = e };

        fh_engine_set_alert_cb(e, keep_payload, &ps);
        /* 30 mm in each of two 5-minute readings: 60 mm in 3 h. */
        for (int i = 0; i < 2; i++) {
                char line[256], why[256];
                fh_reading r;
                int n = snprintf(line, sizeof(line),
                                 "{\"sensor\":\"MY-RG-0001\",\"ts\":%lld,\"values\":{\"rain_mm\":30}}",
                                 1690646400000LL + i * 300000LL);
                assert_int_equal(fh_reading_parse(line, (size_t) n, &r, why, sizeof(why)), FH_REJECT_NONE);
                fh_engine_ingest(e, &r);
        }
        fh_payload *p = ps.p;
        assert_non_null(p);
        assert_int_equal(ps.allocations, 1);
        assert_int_equal(p->kind, FH_OUT_ALERT);
        assert_false(p->cleared);
        assert_int_equal(p->value_len, ps.json.len);
        assert_memory_equal(p->value, ps.json.data, ps.json.len);
        assert_int_equal(p->value[p->value_len], '\0');
        assert_int_equal(p->key_len, strlen("MY-RG-0001"));
        assert_string_equal(p->key, "MY-RG-0001");
        assert_string_equal(p->field, ps.field);
        assert_int_equal(p->field_len, strlen(ps.field));
        assert_string_equal(p->level, "orange");
        assert_string_equal(p->dedupe, ps.key);
        assert_null(p->reason);

        /* Shared: the last reference frees it (ASan and valgrind see a
         * leak or a double free). */
        assert_ptr_equal(fh_payload_ref(p), p);
        assert_null(fh_payload_unref(p));
        assert_int_equal(p->value_len, ps.json.len);
        assert_null(fh_payload_unref(p));
        assert_null(fh_payload_unref(NULL));
        fh_buf_free(&ps.json);
        fh_engine_free(e);
}

#define DAEMON_PARTITIONS 4

typedef struct run {
        uv_loop_t loop;
        uv_timer_t watch;
        fh_daemon *d;
        rd_kafka_t *feeder;
        const lines *l;
        uint64_t warm, want;
        unsigned long alerts, alerts_warm, allocations;
        uint64_t consumed_warm, dead_warm, dead;
        double deadline;
        bool stopped;
} run;

static double now_s(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double) ts.tv_sec + ts.tv_nsec / 1e9;
}

static void conf_set(rd_kafka_conf_t *conf, const char *k, const char *v) {
        char err[256];
        if (rd_kafka_conf_set(conf, k, v, err, sizeof(err)) != RD_KAFKA_CONF_OK)
                fail_msg("%s: %s", k, err);
}

static void produce(rd_kafka_t *feeder, const lines *l, size_t from, size_t to) {
        for (size_t i = from; i < to; i++) {
                /* Keyed by sensor, as gateways send them: one sensor's
                 * readings stay in order in one partition. */
                const char *k = strstr(l->v[i], "\"sensor\":\"");
                size_t kl = 0;
                if (k) {
                        k += 10;
                        kl = strcspn(k, "\"");
                }
                assert_int_equal(rd_kafka_producev(feeder, RD_KAFKA_V_TOPIC("alloc.in"), RD_KAFKA_V_KEY(k, kl),
                                                   RD_KAFKA_V_VALUE(l->v[i], l->len[i]),
                                                   RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END),
                                 RD_KAFKA_RESP_ERR_NO_ERROR);
                if (i % 1000 == 0)
                        rd_kafka_poll(feeder, 0);
        }
        assert_int_equal(rd_kafka_flush(feeder, 30000), RD_KAFKA_RESP_ERR_NO_ERROR);
}

static void on_daemon_alert(void *userdata, const fh_alert *a, const char *json, size_t len) {
        ((run *) userdata)->alerts++;
}

static void on_stopped(void *userdata, int code) {
        run *r = userdata;
        r->stopped = true;
        uv_close((uv_handle_t *) &r->watch, NULL);
}

/* Once the first half is read and its alerts delivered, counting starts
 * and the second half is produced; it ends when that is read and
 * delivered too. */
static void on_watch(uv_timer_t *h) {
        run *r = h->data;
        uint64_t consumed = fh_daemon_consumed(r->d);

        if (r->consumed_warm == 0 && consumed >= r->warm && fh_daemon_in_flight(r->d) == 0) {
                r->consumed_warm = consumed;
                r->dead_warm = fh_daemon_dead_letters(r->d);
                r->alerts_warm = r->alerts;
                atomic_store(&allocations, 0);
                atomic_store(&counting, true);
                produce(r->feeder, r->l, r->warm, r->want);
        }
        if ((consumed >= r->want && fh_daemon_in_flight(r->d) == 0) || now_s() > r->deadline) {
                atomic_store(&counting, false);
                r->allocations = atomic_load(&allocations);
                r->dead = fh_daemon_dead_letters(r->d) - r->dead_warm;
                uv_timer_stop(h);
                fh_daemon_stop(r->d);
        }
}

/* The daemon on librdkafka's mock cluster, with the shipped rules on an
 * event clock and alerts to a Kafka topic: after warm-up, what fenghuo's
 * code allocates while it reads readings and delivers their alerts is one
 * payload per alert and nothing per reading. (With four partitions read
 * in turns, the event clock can run more than `lateness` ahead of a
 * partition; its readings are then dropped to the dead-letter topic, a
 * payload each too, and the text of why, from the shard.) Beyond that, only what grows to a new peak: the
 * offset tracker's blocks of 1,024 messages when more wait behind an
 * undelivered alert than ever before, the shards' batch arrays doubling,
 * a partition's first stored offset: up to about 20 in a run, bounded here
 * by one per hundred readings. Allocating per message past the peak (as
 * the tracker did) came to one per reading in some runs. */
static void the_daemon_allocates_one_payload_per_alert_and_nothing_per_reading(void **state) {
        const char *src = getenv("SRCDIR");
        char err[512], cfgpath[] = "/tmp/fenghuo-alloc-XXXXXX";
        fh_daemon_config cfg;
        fh_diags diags = FH_DIAGS_NULL;
        fh_engine *e = shipped_engine();
        lines l = { 0 };
        fh_sim_options opt = {
                .seed = 7, .start_ms = 1690560000000LL, .duration_ms = 48 * 3600000LL,
                .step_ms = 5 * 60000LL, .tz_offset_min = 480, .storm_scale = 1.0,
        };
        run r = { 0 };

        assert_int_equal(fh_simulate(fh_engine_registry(e), &opt, keep_line, &l), 0);
        fh_engine_free(e);

        rd_kafka_conf_t *conf = rd_kafka_conf_new();
        conf_set(conf, "test.mock.num.brokers", "1");
        conf_set(conf, "linger.ms", "5");
        rd_kafka_t *feeder = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
        assert_non_null(feeder);
        rd_kafka_mock_cluster_t *mc = rd_kafka_handle_mock_cluster(feeder);
        rd_kafka_mock_topic_create(mc, "alloc.in", DAEMON_PARTITIONS, 1);
        rd_kafka_mock_topic_create(mc, "alloc.alerts", 1, 1);
        rd_kafka_mock_topic_create(mc, "alloc.dlq", 1, 1);
        r.feeder = feeder;
        r.l = &l;
        r.want = l.n;
        r.warm = l.n / 2;
        produce(feeder, &l, 0, r.warm);

        int fd = mkstemp(cfgpath);
        assert_true(fd >= 0);
        FILE *cf = fdopen(fd, "w");
        fprintf(cf, "rules: %s/rules\nstations: %s/stations/miyun.csv\nclock: event\nstats_interval: 0s\n"
                    "checkpoint_interval: 0s\nlog_level: error\nkafka:\n  brokers: \"%s\"\n  group_id: alloc\n"
                    "  topics: {rain: alloc.in}\n  alerts_topic: alloc.alerts\n  dead_letter_topic: alloc.dlq\n",
                src, src, rd_kafka_mock_cluster_bootstraps(mc));
        fclose(cf);
        assert_int_equal(fh_daemon_config_load(cfgpath, &cfg, &diags), 0);
        unlink(cfgpath);
        fh_diags_clear(&diags);

        uv_loop_init(&r.loop);
        fh_daemon_hooks hooks = { .on_alert = on_daemon_alert, .on_stopped = on_stopped, .userdata = &r };
        assert_int_equal(fh_daemon_new(&r.d, &r.loop, &cfg, &hooks), 0);
        r.deadline = now_s() + 120;
        uv_timer_init(&r.loop, &r.watch);
        r.watch.data = &r;
        uv_timer_start(&r.watch, on_watch, 20, 20);
        uv_run(&r.loop, UV_RUN_DEFAULT);
        assert_true(r.stopped);
        uint64_t consumed = fh_daemon_consumed(r.d);
        fh_daemon_free(r.d);
        uv_run(&r.loop, UV_RUN_NOWAIT);
        assert_int_equal(uv_loop_close(&r.loop), 0);
        rd_kafka_destroy(feeder);

        unsigned long alerts = r.alerts - r.alerts_warm;
        print_message("%llu readings, %lu alerts and %llu dead letters after warm-up: %lu allocations\n",
                      (unsigned long long) (consumed - r.consumed_warm), alerts, (unsigned long long) r.dead,
                      r.allocations);
        assert_int_equal(consumed, l.n);
        assert_true(consumed - r.consumed_warm > 5000);
        assert_true(alerts > 0);
        long long extra = (long long) r.allocations - (long long) alerts - 2 * (long long) r.dead;
        assert_true(r.allocations >= alerts + r.dead);
        assert_true(extra * 100 <= (long long) (consumed - r.consumed_warm));
        for (size_t i = 0; i < l.n; i++)
                free(l.v[i]);
        free(l.v);
        free(l.len);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(readings_allocate_nothing_once_the_windows_are_full),
                cmocka_unit_test(an_alert_payload_is_one_allocation),
                cmocka_unit_test(the_daemon_allocates_one_payload_per_alert_and_nothing_per_reading),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
