/* The harness of the tests that run the real `fenghuo` binary: test_cli on
 * files, test_daemon and test_recovery against a real Kafka broker and a
 * real redis-server (tests/integration/kafka.sh and redis.sh), judged
 * against `fenghuo replay` of the same input.
 *
 * Two parts. The first needs only libc and cmocka: paths, files, running
 * the binary, the daemon as a child process, comparing alert lists. The
 * second, the servers, is compiled only where IT_HARNESS_SERVERS is defined
 * (tests/meson.build does so for the executables that link librdkafka and
 * hiredis), so that test_cli does not depend on either.
 *
 * Every helper fails the running test (cmocka) rather than return an error:
 * a failed step leaves nothing worth going on with, and the failure is
 * reported where it happened, with the daemon's log when there is one.
 * Nothing waits on a fixed sleep: every wait polls for the expected state
 * and fails at a deadline.
 *
 * Environment: FENGHUO (the binary) and SRCDIR (the source tree) from
 * meson; FENGHUO_TEST_KEEP=1 keeps the temporary directory. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* What the whole test executable shares: one set of paths and, for the
 * server tests, one broker and one redis-server for the whole group (each
 * test has its own topics, group, keys and directories). Set by it_init()
 * and it_servers_setup(), read by everyone. */
typedef struct it_world {
        const char *bin;                /* FENGHUO */
        const char *src;                /* SRCDIR */
        char tmpdir[256];

        /* The server tests' part. */
        char stations[512];             /* stations/miyun.csv */
        char rules_dir[320];            /* the bundled rules without age() */
        char kafka_dir[320], redis_dir[320];
        char bootstrap[128];
        int redis_port;
        bool servers_up;
        char unavailable[256];          /* why not, when !servers_up */
        bool expect_broker_restarts;    /* the test's clients keep quiet about a lost broker */
        /* The idempotent producer of it_produce(): rd_kafka_t by its struct
         * tag, so that test_cli needs no rdkafka.h. */
        struct rd_kafka_s *producer;
} it_world;

extern it_world it;

/* ---- paths and the temporary directory ---- */

/* Reads FENGHUO and SRCDIR and makes /tmp/<prefix>-XXXXXX; -1 (after
 * saying why) when either is missing. */
int it_init(const char *prefix);
/* Removes it.tmpdir, unless FENGHUO_TEST_KEEP=1 keeps it for a post-mortem. */
int it_remove_tmpdir(void);

/* ---- time ---- */

double it_now(void);            /* monotonic, in seconds */
void it_nap_ms(long ms);

/* ---- files and text ---- */

/* The whole file, NUL-terminated; the caller frees it. The file must exist. */
char *it_read_file(const char *path, size_t *ret_len);
/* The same, but a missing file reads as empty: a log the daemon has not
 * opened yet. */
char *it_read_file_or_empty(const char *path, size_t *ret_len);
/* Through a rename, so a daemon reloading never reads half a file. */
void it_write_file(const char *path, const char *text);
size_t it_count_substr(const char *hay, const char *needle);
/* How many times needle is in the file (0 when it does not exist). */
size_t it_file_count(const char *path, const char *needle);
/* The first "name":"value" string member, truncated to n - 1 bytes; "" when
 * there is none. Ids and names never hold escapes, and the top-level
 * members come before any free text. */
void it_json_str(const char *json, const char *name, char *out, size_t n);

/* ---- string lists ---- */

typedef struct it_strs {
        char **v;
        size_t n, cap;
} it_strs;

void it_strs_add(it_strs *s, const char *p, size_t len);
void it_strs_free(it_strs *s);
/* The non-empty lines of text. */
it_strs it_strs_lines(const char *text);

/* ---- running programs ---- */

/* Runs argv (argv[0] a path) to its end with stdin from in_path (NULL:
 * /dev/null), stdout to out_path (NULL: /dev/null) and stderr to err_path
 * (NULL: inherited); returns its exit code, 128 + signal when killed. */
int it_run(const char *const *argv, const char *in_path, const char *out_path, const char *err_path);

/* ---- the daemon as a child process ---- */

typedef struct it_proc {
        pid_t pid;                      /* 0 once it has exited */
        char log[500];                  /* its stderr, appended */
} it_proc;

/* Starts `fenghuo run --config config` with its stderr appended to log and
 * returns once the log says it started, within seconds. Tracked: the test
 * teardown kills whatever a failed test left running. */
void it_daemon_start(it_proc *d, const char *config, const char *log, double seconds);
/* 1 while it runs; else 0 with its exit code in *ret_code. */
int it_daemon_poll(it_proc *d, int *ret_code);
/* Fails the test, with the log's tail, when it has exited. */
void it_daemon_check_alive(it_proc *d);
void it_daemon_signal(it_proc *d, int sig);
/* Waits for the exit; its code, and in *ret_took (may be NULL) how long it
 * took. Past the deadline: the log's tail, SIGKILL and a failure. */
int it_daemon_wait_exit(it_proc *d, double seconds, double *ret_took);
/* A clean stop: SIGTERM, then exit 0 within seconds. */
void it_daemon_stop(it_proc *d, double seconds);
/* Until the log holds `times` copies of needle; the daemon must stay up. */
void it_daemon_wait_log(it_proc *d, const char *needle, size_t times, double seconds);
/* The last 6000 bytes of the log, to stderr. */
void it_daemon_log_tail(const it_proc *d);
/* SIGKILL to every daemon still running: for teardowns after a failure. */
void it_daemon_kill_all(void);

/* ---- comparing alert lists with replay's ---- */

/* What order the daemon promises: readings reach it in file order per
 * sensor, so per sensor its alerts come out in replay's order; where
 * instances hand partitions over, only per (rule, sensor). */
typedef enum it_alert_order {
        IT_PER_SENSOR,
        IT_PER_RULE_AND_SENSOR,
} it_alert_order;

/* Within each group of `order`, got holds exactly want's alerts in want's
 * order, to the byte: event, level, previous, ts, value, alert_id and
 * message all take part. Says which groups differ and how, then fails. */
void it_assert_alerts_equal(const char *what, it_alert_order order, const it_strs *want, const it_strs *got);
/* How many of want's events (alert_id, event, ts) got lacks, in any order
 * and counting copies as one. */
size_t it_count_missing(const it_strs *want, const it_strs *got);

#ifdef IT_HARNESS_SERVERS
#include <librdkafka/rdkafka.h>

/* ---- the servers, for the whole group ---- */

/* cmocka group setup: it_init(prefix), the registry and rules, then the
 * broker, redis-server and the producer. Returns 0 with !it.servers_up when
 * a tool is missing (the tests skip themselves), -1 when a server fails. */
int it_servers_setup(const char *prefix, bool expect_broker_restarts);
int it_servers_teardown(void);

/* Each test's fixtures: the time it took; after a failure, the daemons and
 * readers it left and a server it left stopped. */
int it_test_setup(void **state);
int it_test_teardown(void **state);

/* First in every server test (cmocka's skip(), so include cmocka.h). */
#define IT_NEED_SERVERS()                                                  \
        do {                                                               \
                if (!it.servers_up) {                                      \
                        fprintf(stderr, "skipped: %s\n", it.unavailable);  \
                        skip();                                            \
                }                                                          \
        } while (0)

/* Outages under a running daemon. The broker comes back at its address;
 * redis-server may come back on another port, then in it.redis_port. */
void it_kafka_stop(void);
void it_kafka_start(void);
void it_redis_stop(void);
void it_redis_start(void);

/* ---- stations ---- */

#define IT_N_KINDS 4
extern const char *const it_kind_names[IT_N_KINDS];

typedef struct it_station {
        char id[72];
        int kind;                       /* index into it_kind_names */
} it_station;

const it_station *it_find_station(const char *id);

/* ---- Kafka ---- */

void it_kafka_conf_set(rd_kafka_conf_t *conf, const char *name, const char *value);
/* The topic's partition count once every partition has a leader, else -1. */
int it_partitions_ready(rd_kafka_t *rk, const char *topic);
/* Through the admin API rather than kafka.sh create-topic: one JVM start
 * per topic would cost seconds, and a topic config (compaction) is needed.
 * cleanup_policy NULL: the broker's default. Returns once every partition
 * has a leader. */
void it_create_topic(const char *name, int partitions, const char *cleanup_policy);
/* Queued on it.producer (copied); key NULL for none. */
void it_produce(const char *topic, const char *key, const char *value, size_t len);
/* Until everything queued is delivered; any delivery error fails the test. */
void it_flush(int timeout_ms);

/* A topic read from the beginning, every partition assigned (no group). */
typedef struct it_reader {
        rd_kafka_t *rk;
        char topic[96];
        int parts;
        int64_t next[64];               /* per partition, the offset after the last read */
        it_strs value, key;
        it_strs reason, src_topic;      /* the dead-letter headers, "" when absent */
        size_t empty_values;
} it_reader;

void it_reader_open(it_reader *r, const char *topic);
/* Whatever arrives within timeout_ms, and all that is ready after it. */
void it_reader_poll(it_reader *r, int timeout_ms);
/* Everything the topic holds right now, by its high watermarks. */
void it_reader_drain(it_reader *r);
void it_reader_close(it_reader *r);

/* ---- Redis ---- */

/* XLEN of the stream; -1 when Redis does not answer. */
long long it_redis_xlen(const char *stream);
/* Every entry's `alert` field, oldest first; each entry must hold exactly
 * that one field. */
it_strs it_redis_stream(const char *stream);
/* HGETALL, appended to fields and values. */
void it_redis_hash(const char *hash, it_strs *fields, it_strs *values);

/* ---- a test's environment ---- */

/* One test's names, all prefixed with its name so that tests sharing the
 * servers never meet: input topics per station kind, alerts and dead-letter
 * topics (and a compacted state topic when asked), the group, the Redis
 * keys, and its directory under it.tmpdir. */
typedef struct it_env {
        char name[16];
        char dir[400];
        char topic[IT_N_KINDS][48];
        char alerts[48], dlq[48], group[48], state_topic[48];
        char stream[48], hash[48], channel[48];
        char rules[480];                /* the rules directory its daemons and replay use */
        char config[480];               /* dir/fenghuo.yaml, for a test with one config */
        char state[480];                /* dir/state, likewise */
} it_env;

/* Creates the directory and the topics. rules NULL: an empty rules
 * directory of its own, for the test to write. Writes no config. */
void it_env_init(it_env *t, const char *name, int in_partitions, const char *rules, bool state_topic);

/* One instance's configuration. Every instance of a test shares topics,
 * group and Redis keys, and needs a state directory of its own. */
typedef struct it_config {
        const char *state_dir;
        const char *checkpoint_interval;        /* NULL: the daemon's default */
        int heartbeat_ms;                       /* 0: librdkafka's default */
        int redis_port;                         /* 0: no Redis */
        int shards;                             /* 0: the daemon's default */
        const char *cap_topic;                  /* NULL: no CAP output */
} it_config;

void it_config_write(const it_env *t, const char *path, const it_config *c);

/* ---- input ---- */

typedef struct it_input {
        char *text;
        it_strs line;                   /* the non-blank lines, as replay reads them */
} it_input;

/* A day of storm over the registry, 10-minute steps, 1% bad lines, in
 * t->dir/input.jsonl. */
void it_simulate(const it_env *t, unsigned seed, it_input *in);
void it_input_free(it_input *in);
/* Keyed by sensor, to its kind's topic, so each sensor's readings reach the
 * daemon in file order; a line without a known sensor goes unkeyed to the
 * rain topic. */
void it_produce_line(const it_env *t, const char *line);
/* Lines [from, to), then a flush. */
void it_produce_range(const it_env *t, const it_input *in, size_t from, size_t to);
/* `fenghuo replay` of lines [0, n) with t->rules: its alert lines. tag
 * names its files in t->dir. ret_rejected (may be NULL): the summary's
 * count of rejected lines. */
it_strs it_replay(const it_env *t, const it_input *in, size_t n, const char *tag, size_t *ret_rejected);

#endif /* IT_HARNESS_SERVERS */
