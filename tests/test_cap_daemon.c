/* The daemon's CAP output (src/daemon/cap_out.c) end to end: `fenghuo run`
 * as a child process against librdkafka's mock cluster, which lives in this
 * process and which the child reaches over TCP like any broker. Judged
 * against `fenghuo replay --cap` of the same storm:
 *
 * - the CAP topic and cap_dir hold exactly replay's messages, each once,
 *   status Actual instead of Exercise, every one valid against the OASIS
 *   CAP 1.2 schema (libxml2), references chaining each alert's lifecycle;
 * - killed with SIGKILL twice mid-storm and restarted: still each message
 *   exactly once on the topic (by identifier) and in cap_dir;
 * - cap_dir full (a small tmpfs; where mounting is not allowed, a path
 *   that cannot be a directory): a clear error in the log, the messages
 *   retried and written once space is back, the topic unaffected.
 *
 * The storm is tests/data/storm-small.jsonl with its rules (age() among
 * them) and registry. Every reading goes, keyed by sensor and in file
 * order, to one single-partition topic, and the daemon runs on the data's
 * clock (`clock: event`): it sees the readings and tick boundaries in
 * replay's order, so its events are replay's. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>
#include <libxml/parser.h>
#include <libxml/tree.h>
#include <libxml/xmlschemas.h>

#include "it_harness.h"

static rd_kafka_t *feeder;           /* holds the mock cluster */
static rd_kafka_mock_cluster_t *mc;
static xmlSchemaPtr schema;
static char mounted[800];

static void conf_set(rd_kafka_conf_t *conf, const char *k, const char *v) {
        char err[256];
        if (rd_kafka_conf_set(conf, k, v, err, sizeof(err)) != RD_KAFKA_CONF_OK)
                fail_msg("%s: %s", k, err);
}

static void path_join(char *out, size_t n, const char *a, const char *b) {
        int r = snprintf(out, n, "%s/%s", a, b);
        assert_true(r > 0 && (size_t) r < n);
}

/* ---- replay's messages ---- */

typedef struct capmsg {
        char *identifier;
        char *xml;
} capmsg;

typedef struct capset {
        capmsg *v;
        size_t n;
} capset;

static void capset_add(capset *s, const char *id, const char *xml, size_t len) {
        s->v = realloc(s->v, (s->n + 1) * sizeof(*s->v));
        s->v[s->n].identifier = strdup(id);
        s->v[s->n].xml = strndup(xml, len);
        s->n++;
}

static void capset_free(capset *s) {
        for (size_t i = 0; i < s->n; i++) {
                free(s->v[i].identifier);
                free(s->v[i].xml);
        }
        free(s->v);
        *s = (capset) { 0 };
}

static const capmsg *capset_find(const capset *s, const char *id) {
        for (size_t i = 0; i < s->n; i++)
                if (!strcmp(s->v[i].identifier, id))
                        return &s->v[i];
        return NULL;
}

static char *child_text(xmlNode *parent, const char *name) {
        for (xmlNode *n = parent->children; n; n = n->next)
                if (n->type == XML_ELEMENT_NODE && !strcmp((const char *) n->name, name)) {
                        xmlChar *c = xmlNodeGetContent(n);
                        char *s = strdup((const char *) c);
                        xmlFree(c);
                        return s;
                }
        return NULL;
}

/* Parses and validates one message; its identifier (malloc'd). */
static char *validate(const char *what, const char *xml, size_t len) {
        xmlDocPtr doc = xmlReadMemory(xml, (int) len, what, NULL, XML_PARSE_NONET);
        if (!doc)
                fail_msg("%s is not well-formed XML", what);
        xmlSchemaValidCtxtPtr vc = xmlSchemaNewValidCtxt(schema);
        int r = xmlSchemaValidateDoc(vc, doc);
        xmlSchemaFreeValidCtxt(vc);
        if (r != 0)
                fail_msg("%s does not validate against CAP-v1.2.xsd (libxml2's reasons above)", what);
        char *id = child_text(xmlDocGetRootElement(doc), "identifier");
        xmlFreeDoc(doc);
        assert_non_null(id);
        return id;
}

/* s with the first from replaced by to (malloc'd; a copy when absent). */
static char *replace(const char *s, const char *from, const char *to) {
        const char *p = strstr(s, from);
        if (!p)
                return strdup(s);
        size_t a = (size_t) (p - s), nf = strlen(from), nt = strlen(to), rest = strlen(p + nf);
        char *r = malloc(a + nt + rest + 1);
        memcpy(r, s, a);
        memcpy(r + a, to, nt);
        memcpy(r + a + nt, p + nf, rest + 1);
        return r;
}

/* What replay writes differs from the daemon's only by status and the
 * note that says it is an exercise: made into the daemon's. */
static char *as_actual(const char *xml) {
        char *a = replace(xml, "<status>Exercise</status>", "<status>Actual</status>");
        char *b = replace(a, "演练：由历史或模拟数据回放生成，非实际预警。", "");
        char *c = replace(b, "  <note></note>\n", "");
        free(a);
        free(b);
        return c;
}

/* Every *.xml of dir, validated; fails on any other file (a temporary
 * one left behind). */
static capset load_dir(const char *dir) {
        capset s = { 0 };
        DIR *d = opendir(dir);
        struct dirent *de;

        assert_non_null(d);
        while ((de = readdir(d))) {
                if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..") || !strcmp(de->d_name, "filler") ||
                    !strcmp(de->d_name, "lost+found"))
                        continue;
                size_t n = strlen(de->d_name);
                if (n < 5 || strcmp(de->d_name + n - 4, ".xml") || de->d_name[0] == '.')
                        fail_msg("%s holds %s, not a CAP message file", dir, de->d_name);
                char path[1024];
                size_t len;
                path_join(path, sizeof(path), dir, de->d_name);
                char *text = it_read_file(path, &len);
                char *id = validate(path, text, len);
                char want[300];
                snprintf(want, sizeof(want), "%s.xml", id);
                assert_string_equal(de->d_name, want);
                capset_add(&s, id, text, len);
                free(id);
                free(text);
        }
        closedir(d);
        return s;
}

typedef struct storm {
        char input[512], rules[512], stations[512];
        it_strs lines;
        capset want;           /* replay's, made Actual */
        size_t n_alerts, n_updates, n_cancels;
} storm;

static void storm_load(storm *st, const char *name) {
        char dir[512], out[512], err[512];
        memset(st, 0, sizeof(*st));
        snprintf(st->input, sizeof(st->input), "%s/tests/data/storm-small.jsonl", it.src);
        snprintf(st->rules, sizeof(st->rules), "%s/tests/data/rules-small", it.src);
        snprintf(st->stations, sizeof(st->stations), "%s/tests/data/stations-small.csv", it.src);
        snprintf(dir, sizeof(dir), "%s/%s-replay-cap", it.tmpdir, name);
        snprintf(out, sizeof(out), "%s/%s-replay.jsonl", it.tmpdir, name);
        snprintf(err, sizeof(err), "%s/%s-replay.err", it.tmpdir, name);
        const char *argv[] = { it.bin, "replay", "--rules", st->rules, "--stations", st->stations, "--cap", dir,
                               st->input, NULL };
        assert_int_equal(it_run(argv, NULL, out, err), 0);
        capset ex = load_dir(dir);
        for (size_t i = 0; i < ex.n; i++) {
                char *x = as_actual(ex.v[i].xml);
                capset_add(&st->want, ex.v[i].identifier, x, strlen(x));
                if (strstr(x, "<msgType>Alert</msgType>"))
                        st->n_alerts++;
                else if (strstr(x, "<msgType>Update</msgType>"))
                        st->n_updates++;
                else
                        st->n_cancels++;
                free(x);
        }
        capset_free(&ex);
        /* A lifecycle of every kind, with an Update referencing an Update. */
        assert_true(st->n_alerts > 0 && st->n_updates > 0 && st->n_cancels > 0);
        char *text = it_read_file(st->input, NULL);
        st->lines = it_strs_lines(text);
        free(text);
}

static void storm_free(storm *st) {
        capset_free(&st->want);
        it_strs_free(&st->lines);
}

/* ---- Kafka ---- */

static void create_topics(const char *name, char in[64], char alerts[64], char cap[64]) {
        snprintf(in, 64, "%s.in", name);
        snprintf(alerts, 64, "%s.alerts", name);
        snprintf(cap, 64, "%s.cap", name);
        assert_int_equal(rd_kafka_mock_topic_create(mc, in, 1, 1), RD_KAFKA_RESP_ERR_NO_ERROR);
        assert_int_equal(rd_kafka_mock_topic_create(mc, alerts, 2, 1), RD_KAFKA_RESP_ERR_NO_ERROR);
        /* Several partitions: one alert's messages must stay in one. */
        assert_int_equal(rd_kafka_mock_topic_create(mc, cap, 3, 1), RD_KAFKA_RESP_ERR_NO_ERROR);
}

static void feed(const char *topic, const storm *st, size_t from, size_t to) {
        for (size_t i = from; i < to; i++) {
                char sensor[64];
                it_json_str(st->lines.v[i], "sensor", sensor, sizeof(sensor));
                assert_int_equal(rd_kafka_producev(feeder, RD_KAFKA_V_TOPIC(topic),
                                                   RD_KAFKA_V_KEY(sensor, strlen(sensor)),
                                                   RD_KAFKA_V_VALUE(st->lines.v[i], strlen(st->lines.v[i])),
                                                   RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END),
                                 RD_KAFKA_RESP_ERR_NO_ERROR);
        }
        assert_int_equal(rd_kafka_flush(feeder, 10000), RD_KAFKA_RESP_ERR_NO_ERROR);
}

/* Everything topic holds now: values, keys and the identifier headers, in
 * partition order. */
typedef struct topic_msgs {
        it_strs value, key, header;
        it_strs partition;     /* as text */
} topic_msgs;

static void topic_msgs_free(topic_msgs *t) {
        it_strs_free(&t->value);
        it_strs_free(&t->key);
        it_strs_free(&t->header);
        it_strs_free(&t->partition);
}

static topic_msgs read_topic(const char *topic, int partitions) {
        char err[256];
        topic_msgs t = { 0 };
        rd_kafka_conf_t *conf = rd_kafka_conf_new();
        conf_set(conf, "bootstrap.servers", rd_kafka_mock_cluster_bootstraps(mc));
        conf_set(conf, "group.id", "cap-test-reader");
        conf_set(conf, "enable.partition.eof", "true");
        conf_set(conf, "enable.auto.commit", "false");
        rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err));
        assert_non_null(rk);
        rd_kafka_poll_set_consumer(rk);
        rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new(partitions);
        for (int p = 0; p < partitions; p++)
                rd_kafka_topic_partition_list_add(parts, topic, p)->offset = RD_KAFKA_OFFSET_BEGINNING;
        assert_int_equal(rd_kafka_assign(rk, parts), RD_KAFKA_RESP_ERR_NO_ERROR);
        rd_kafka_topic_partition_list_destroy(parts);
        int eofs = 0;
        double deadline = it_now() + 20;
        while (eofs < partitions && it_now() < deadline) {
                rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 200);
                if (!m)
                        continue;
                if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF)
                        eofs++;
                else if (!m->err) {
                        const void *hv = NULL;
                        size_t hn = 0;
                        rd_kafka_headers_t *h = NULL;
                        char ps[16];
                        it_strs_add(&t.value, m->payload, m->len);
                        it_strs_add(&t.key, m->key ? m->key : "", m->key_len);
                        if (rd_kafka_message_headers(m, &h) || rd_kafka_header_get_last(h, "fenghuo.cap.identifier", &hv, &hn))
                                hv = "", hn = 0;
                        it_strs_add(&t.header, hv, hn);
                        snprintf(ps, sizeof(ps), "%d", m->partition);
                        it_strs_add(&t.partition, ps, strlen(ps));
                } else
                        fail_msg("reading %s: %s", topic, rd_kafka_message_errstr(m));
                rd_kafka_message_destroy(m);
        }
        assert_int_equal(eofs, partitions);
        rd_kafka_consumer_close(rk);
        rd_kafka_destroy(rk);
        return t;
}

static size_t topic_count(const char *topic, int partitions) {
        size_t n = 0;
        for (int p = 0; p < partitions; p++) {
                int64_t lo, hi;
                if (rd_kafka_query_watermark_offsets(feeder, topic, p, &lo, &hi, 5000) == RD_KAFKA_RESP_ERR_NO_ERROR)
                        n += (size_t) (hi - lo);
        }
        return n;
}

static void wait_topic_count(it_proc *d, const char *topic, int partitions, size_t want, double seconds) {
        double deadline = it_now() + seconds;
        size_t n;
        while ((n = topic_count(topic, partitions)) < want) {
                if (d)
                        it_daemon_check_alive(d);
                if (it_now() > deadline) {
                        if (d)
                                it_daemon_log_tail(d);
                        fail_msg("%s holds %zu messages after %.0f s, want %zu", topic, n, seconds, want);
                }
                it_nap_ms(50);
        }
}

/* ---- the daemon ---- */

static void write_config(const char *path, const char *name, const storm *st, const char *in, const char *alerts,
                         const char *cap, const char *state, const char *cap_dir) {
        char text[4096];
        snprintf(text, sizeof(text),
                 "rules: %s\nstations: %s\nclock: event\nstate_dir: %s\ncheckpoint_interval: 1h\n"
                 "stats_interval: 0s\nlog_level: info\ncap_dir: %s\n"
                 "kafka:\n  brokers: \"%s\"\n  group_id: %s\n  topics: {rain: %s}\n  alerts_topic: %s\n"
                 "  cap_topic: %s\n  consumer_properties:\n    session.timeout.ms: \"6000\"\n"
                 "    heartbeat.interval.ms: \"500\"\n",
                 st->rules, st->stations, state, cap_dir, rd_kafka_mock_cluster_bootstraps(mc), name, in, alerts, cap);
        it_write_file(path, text);
}

/* One test's storm, topics and files, all named after the test. */
typedef struct tcase {
        storm st;
        char in[64], alerts[64], cap[64];
        char dir[600], cap_dir[800], state_dir[700], config[700], log[700];
} tcase;

static void case_init(tcase *t, const char *name) {
        storm_load(&t->st, name);
        create_topics(name, t->in, t->alerts, t->cap);
        assert_true((size_t) snprintf(t->dir, sizeof(t->dir), "%s/%s", it.tmpdir, name) < sizeof(t->dir));
        assert_int_equal(mkdir(t->dir, 0755), 0);
        path_join(t->cap_dir, sizeof(t->cap_dir), t->dir, "cap");
        path_join(t->state_dir, sizeof(t->state_dir), t->dir, "state");
        path_join(t->config, sizeof(t->config), t->dir, "fenghuo.yaml");
        path_join(t->log, sizeof(t->log), t->dir, "daemon.log");
}

static void case_config(tcase *t, const char *name) {
        write_config(t->config, name, &t->st, t->in, t->alerts, t->cap, t->state_dir, t->cap_dir);
}

/* The topic's messages are exactly st->want's, each once: by identifier
 * (the header and the XML agree), keyed by sensor, every one valid; one
 * alert's messages in one partition, in lifecycle order. */
static void assert_topic_is_replays(const storm *st, const char *topic) {
        topic_msgs t = read_topic(topic, 3);
        char what[256];
        bool *seen = calloc(st->want.n, sizeof(bool));

        for (size_t i = 0; i < t.value.n; i++) {
                snprintf(what, sizeof(what), "%s message %zu", topic, i);
                char *id = validate(what, t.value.v[i], strlen(t.value.v[i]));
                assert_string_equal(t.header.v[i], id);
                const capmsg *w = capset_find(&st->want, id);
                if (!w)
                        fail_msg("%s: %s is not one of replay's messages", what, id);
                size_t k = (size_t) (w - st->want.v);
                if (seen[k])
                        fail_msg("%s: %s published twice", what, id);
                seen[k] = true;
                assert_string_equal(t.value.v[i], w->xml);
                /* <parameter><valueName>sensor</valueName><value>KEY</value> */
                char want_key[128];
                snprintf(want_key, sizeof(want_key), "<valueName>sensor</valueName>\n      <value>%s</value>",
                         t.key.v[i]);
                assert_non_null(strstr(t.value.v[i], want_key));
                /* Every reference points at a message earlier in its partition. */
                const char *refs = strstr(t.value.v[i], "<references>");
                if (refs) {
                        const char *end = strstr(refs, "</references>");
                        for (const char *p = refs; (p = strstr(p, ",11011800000000_")) && p < end; p++) {
                                const char *e = strchr(p + 1, ',');
                                char rid[200];
                                snprintf(rid, sizeof(rid), "%.*s", (int) (e - p - 1), p + 1);
                                bool before = false;
                                for (size_t j = 0; j < i && !before; j++)
                                        before = !strcmp(t.header.v[j], rid) && !strcmp(t.partition.v[j], t.partition.v[i]);
                                if (!before)
                                        fail_msg("%s: references %s, which is not before it in partition %s", what, rid,
                                                 t.partition.v[i]);
                        }
                }
                free(id);
        }
        assert_int_equal(t.value.n, st->want.n);
        free(seen);
        topic_msgs_free(&t);
}

static void assert_dir_is_replays(const storm *st, const char *dir) {
        capset got = load_dir(dir);
        for (size_t i = 0; i < got.n; i++) {
                const capmsg *w = capset_find(&st->want, got.v[i].identifier);
                if (!w)
                        fail_msg("%s/%s.xml is not one of replay's messages", dir, got.v[i].identifier);
                assert_string_equal(got.v[i].xml, w->xml);
        }
        /* Names are identifiers: no two files hold one message. */
        assert_int_equal(got.n, st->want.n);
        capset_free(&got);
}

/* ---- tests ---- */

static void daemon_publishes_replays_lifecycle_as_actual_cap(void **state) {
        tcase t;
        it_proc d;

        case_init(&t, "plain");
        case_config(&t, "plain");
        feed(t.in, &t.st, 0, t.st.lines.n);
        it_daemon_start(&d, t.config, t.log, 30);
        wait_topic_count(&d, t.cap, 3, t.st.want.n, 60);
        it_daemon_stop(&d, 30);

        assert_topic_is_replays(&t.st, t.cap);
        assert_dir_is_replays(&t.st, t.cap_dir);
        print_message("%zu CAP messages (%zu Alert, %zu Update, %zu Cancel) on %s and in %s, as replay's\n",
                      t.st.want.n, t.st.n_alerts, t.st.n_updates, t.st.n_cancels, t.cap, t.cap_dir);
        storm_free(&t.st);
}

/* SIGKILL as soon as the first CAP message is out (others in flight), and
 * again once the first half's are all out and nothing is checkpointed
 * past the start: each restart regenerates what was published already. */
static void sigkill_mid_storm_loses_and_repeats_no_cap_message(void **state) {
        tcase t;
        char half_in[800], half_out[800], half_cap[800];
        it_proc d;

        case_init(&t, "kill");
        case_config(&t, "kill");
        /* How many messages the first half of the input makes: replay's. */
        size_t half = t.st.lines.n / 2;
        path_join(half_in, sizeof(half_in), t.dir, "half.jsonl");
        path_join(half_out, sizeof(half_out), t.dir, "half-alerts.jsonl");
        path_join(half_cap, sizeof(half_cap), t.dir, "half-cap");
        FILE *f = fopen(half_in, "w");
        for (size_t i = 0; i < half; i++)
                fprintf(f, "%s\n", t.st.lines.v[i]);
        fclose(f);
        const char *argv[] = { it.bin, "replay", "--rules", t.st.rules, "--stations", t.st.stations, "--cap", half_cap,
                               half_in, NULL };
        assert_int_equal(it_run(argv, NULL, half_out, "/dev/null"), 0);
        capset h = load_dir(half_cap);
        size_t n_half = h.n;
        capset_free(&h);
        assert_true(n_half > 1 && n_half < t.st.want.n);

        feed(t.in, &t.st, 0, half);
        it_daemon_start(&d, t.config, t.log, 30);
        wait_topic_count(&d, t.cap, 3, 1, 60);
        it_daemon_signal(&d, SIGKILL);
        it_daemon_wait_exit(&d, 10, NULL);

        it_daemon_start(&d, t.config, t.log, 30);
        wait_topic_count(&d, t.cap, 3, n_half, 60);
        it_daemon_signal(&d, SIGKILL);
        it_daemon_wait_exit(&d, 10, NULL);

        feed(t.in, &t.st, half, t.st.lines.n);
        it_daemon_start(&d, t.config, t.log, 30);
        wait_topic_count(&d, t.cap, 3, t.st.want.n, 60);
        it_daemon_stop(&d, 30);

        assert_topic_is_replays(&t.st, t.cap);
        assert_dir_is_replays(&t.st, t.cap_dir);
        /* The restarts did regenerate what was out before the kill. */
        assert_true(it_file_count(t.log, "CAP messages were published after the last checkpoint") >= 2);
        storm_free(&t.st);
}

static void unmount_test_fs(void) {
        if (mounted[0] && umount2(mounted, MNT_DETACH) < 0)
                fprintf(stderr, "umount %s: %s\n", mounted, strerror(errno));
        mounted[0] = 0;
}

/* Fills the filesystem of dir until a write fails with ENOSPC. */
static void fill(const char *dir) {
        char path[800];
        static char block[4096];
        path_join(path, sizeof(path), dir, "filler");
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        assert_true(fd >= 0);
        while (write(fd, block, sizeof(block)) > 0)
                ;
        assert_int_equal(errno, ENOSPC);
        close(fd);
}

static void a_full_cap_dir_is_reported_retried_and_then_written(void **state) {
        tcase t;
        char filler[1000];
        bool tmpfs;

        case_init(&t, "full");
        assert_int_equal(mkdir(t.cap_dir, 0755), 0);
        /* A full disk, really: a tmpfs of 64 KiB, filled. Where mounting
         * is not allowed, a cap_dir under a regular file (ENOTDIR). */
        tmpfs = mount("tmpfs", t.cap_dir, "tmpfs", MS_NOSUID | MS_NODEV, "size=64k") == 0;
        if (tmpfs) {
                assert_true((size_t) snprintf(mounted, sizeof(mounted), "%s", t.cap_dir) < sizeof(mounted));
                fill(t.cap_dir);
                path_join(filler, sizeof(filler), t.cap_dir, "filler");
        } else {
                fprintf(stderr, "cannot mount a tmpfs (%s): cap_dir under a regular file instead\n", strerror(errno));
                path_join(filler, sizeof(filler), t.dir, "blocker");
                it_write_file(filler, "not a directory\n");
                path_join(t.cap_dir, sizeof(t.cap_dir), filler, "cap");
        }
        case_config(&t, "full");
        feed(t.in, &t.st, 0, t.st.lines.n);

        it_proc d;
        it_daemon_start(&d, t.config, t.log, 30);
        /* Kafka does not wait for the disk. */
        wait_topic_count(&d, t.cap, 3, t.st.want.n, 60);
        it_daemon_wait_log(&d, tmpfs ? "No space left on device" : "Not a directory", 1, 30);
        it_daemon_wait_log(&d, "CAP: cannot write", 1, 1);
        /* Said once, not once per message and retry. */
        it_nap_ms(2500);
        assert_int_equal(it_file_count(t.log, "CAP: cannot write"), 1);

        if (tmpfs) {
                assert_int_equal(unlink(filler), 0);
        } else {
                assert_int_equal(unlink(filler), 0);
                assert_int_equal(mkdir(filler, 0755), 0);
        }
        it_daemon_wait_log(&d, "is writable again", 1, 30);
        /* Every message, each once, before the daemon is asked to stop. */
        double deadline = it_now() + 30;
        for (;;) {
                capset got = load_dir(t.cap_dir);
                size_t n = got.n;
                capset_free(&got);
                if (n == t.st.want.n)
                        break;
                if (it_now() > deadline)
                        fail_msg("%s holds %zu of %zu messages 30 s after it became writable", t.cap_dir, n, t.st.want.n);
                it_nap_ms(100);
        }
        it_daemon_stop(&d, 30);
        assert_dir_is_replays(&t.st, t.cap_dir);
        assert_topic_is_replays(&t.st, t.cap);
        unmount_test_fs();
        storm_free(&t.st);
}

static int group_setup(void **state) {
        char err[512], xsd[600];

        if (it_init("fenghuo-cap-daemon") < 0)
                return -1;
        rd_kafka_conf_t *conf = rd_kafka_conf_new();
        conf_set(conf, "test.mock.num.brokers", "1");
        conf_set(conf, "linger.ms", "0");
        feeder = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
        if (!feeder) {
                fprintf(stderr, "mock cluster: %s\n", err);
                return -1;
        }
        mc = rd_kafka_handle_mock_cluster(feeder);
        snprintf(xsd, sizeof(xsd), "%s/tests/data/cap/CAP-v1.2.xsd", it.src);
        xmlSchemaParserCtxtPtr pc = xmlSchemaNewParserCtxt(xsd);
        schema = xmlSchemaParse(pc);
        xmlSchemaFreeParserCtxt(pc);
        atexit(unmount_test_fs);
        return schema ? 0 : -1;
}

static int group_teardown(void **state) {
        unmount_test_fs();
        it_daemon_kill_all();
        xmlSchemaFree(schema);
        rd_kafka_destroy(feeder);
        return it_remove_tmpdir();
}

static int test_teardown(void **state) {
        it_daemon_kill_all();
        unmount_test_fs();
        return 0;
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_teardown(daemon_publishes_replays_lifecycle_as_actual_cap, test_teardown),
                cmocka_unit_test_teardown(sigkill_mid_storm_loses_and_repeats_no_cap_message, test_teardown),
                cmocka_unit_test_teardown(a_full_cap_dir_is_reported_retried_and_then_written, test_teardown),
        };
        return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
