/* The harness of the tests that run the real binary: see it_harness.h. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
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
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "it_harness.h"

#ifdef IT_HARNESS_SERVERS
#include <hiredis/hiredis.h>
#endif

extern char **environ;

it_world it;

/* Daemons alive right now, killed by the teardown if a test fails. */
static pid_t live[8];

/* ---- paths and the temporary directory ---- */

int it_init(const char *prefix) {
        it.bin = getenv("FENGHUO");
        it.src = getenv("SRCDIR");
        if (!it.bin || !it.src) {
                fprintf(stderr, "FENGHUO and SRCDIR must be set (meson test does)\n");
                return -1;
        }
        snprintf(it.tmpdir, sizeof(it.tmpdir), "/tmp/%s-XXXXXX", prefix);
        return mkdtemp(it.tmpdir) ? 0 : -1;
}

int it_remove_tmpdir(void) {
        char cmd[400];
        const char *keep = getenv("FENGHUO_TEST_KEEP");

        if (!it.tmpdir[0])
                return 0;
        if (keep && *keep == '1') {
                fprintf(stderr, "kept %s\n", it.tmpdir);
                return 0;
        }
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", it.tmpdir);
        return system(cmd) == 0 ? 0 : -1;
}

/* ---- time ---- */

double it_now(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}

void it_nap_ms(long ms) {
        struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
                ;
}

/* ---- files and text ---- */

static char *read_stream(FILE *f, size_t *ret_len) {
        char *p = NULL;
        size_t n = 0, cap = 0;

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

char *it_read_file(const char *path, size_t *ret_len) {
        FILE *f = fopen(path, "re");
        assert_non_null(f);
        return read_stream(f, ret_len);
}

char *it_read_file_or_empty(const char *path, size_t *ret_len) {
        FILE *f = fopen(path, "re");
        char *p;

        if (f)
                return read_stream(f, ret_len);
        if (ret_len)
                *ret_len = 0;
        p = strdup("");
        assert_non_null(p);
        return p;
}

void it_write_file(const char *path, const char *text) {
        char tmp[700];
        FILE *f;

        snprintf(tmp, sizeof(tmp), "%s.tmp", path);
        f = fopen(tmp, "we");
        assert_non_null(f);
        fputs(text, f);
        assert_int_equal(fclose(f), 0);
        assert_int_equal(rename(tmp, path), 0);
}

size_t it_count_substr(const char *hay, const char *needle) {
        size_t n = 0;
        for (const char *p = strstr(hay, needle); p; p = strstr(p + 1, needle))
                n++;
        return n;
}

size_t it_file_count(const char *path, const char *needle) {
        char *text = it_read_file_or_empty(path, NULL);
        size_t n = it_count_substr(text, needle);
        free(text);
        return n;
}

void it_json_str(const char *json, const char *name, char *out, size_t n) {
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

/* ---- string lists ---- */

void it_strs_add(it_strs *s, const char *p, size_t len) {
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

void it_strs_free(it_strs *s) {
        for (size_t i = 0; i < s->n; i++)
                free(s->v[i]);
        free(s->v);
        *s = (it_strs) { 0 };
}

it_strs it_strs_lines(const char *text) {
        it_strs s = { 0 };
        for (const char *p = text; *p;) {
                const char *nl = strchr(p, '\n');
                size_t len = nl ? (size_t) (nl - p) : strlen(p);
                if (len)
                        it_strs_add(&s, p, len);
                p += len + (nl ? 1 : 0);
        }
        return s;
}

/* ---- running programs ---- */

int it_run(const char *const *argv, const char *in_path, const char *out_path, const char *err_path) {
        posix_spawn_file_actions_t fa;
        pid_t pid;
        int st;

        posix_spawn_file_actions_init(&fa);
        posix_spawn_file_actions_addopen(&fa, 0, in_path ? in_path : "/dev/null", O_RDONLY, 0);
        posix_spawn_file_actions_addopen(&fa, 1, out_path ? out_path : "/dev/null", O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (err_path)
                posix_spawn_file_actions_addopen(&fa, 2, err_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        assert_int_equal(posix_spawn(&pid, argv[0], &fa, NULL, (char *const *) argv, environ), 0);
        posix_spawn_file_actions_destroy(&fa);
        while (waitpid(pid, &st, 0) < 0)
                assert_int_equal(errno, EINTR);
        return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* ---- the daemon as a child process ---- */

static void track(pid_t pid, bool add) {
        for (size_t i = 0; i < sizeof(live) / sizeof(live[0]); i++)
                if (add ? live[i] == 0 : live[i] == pid) {
                        live[i] = add ? pid : 0;
                        return;
                }
}

void it_daemon_kill_all(void) {
        for (size_t i = 0; i < sizeof(live) / sizeof(live[0]); i++)
                if (live[i] > 0) {
                        kill(live[i], SIGKILL);
                        waitpid(live[i], NULL, 0);
                        live[i] = 0;
                }
}

void it_daemon_log_tail(const it_proc *d) {
        size_t len;
        char *text = it_read_file_or_empty(d->log, &len);
        const char *p = len > 6000 ? text + len - 6000 : text;
        fprintf(stderr, "---- end of %s ----\n%s---- (end) ----\n", d->log, p);
        free(text);
}

int it_daemon_poll(it_proc *d, int *ret_code) {
        int st;
        pid_t r = waitpid(d->pid, &st, WNOHANG);
        if (r == 0)
                return 1;
        assert_int_equal(r, d->pid);
        track(d->pid, false);
        d->pid = 0;
        *ret_code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        return 0;
}

void it_daemon_check_alive(it_proc *d) {
        int code;
        if (d->pid && it_daemon_poll(d, &code) == 0) {
                fprintf(stderr, "the daemon exited unexpectedly with %d\n", code);
                it_daemon_log_tail(d);
                fail();
        }
}

void it_daemon_wait_log(it_proc *d, const char *needle, size_t times, double seconds) {
        double deadline = it_now() + seconds;

        for (;;) {
                if (it_file_count(d->log, needle) >= times)
                        return;
                it_daemon_check_alive(d);
                if (it_now() > deadline) {
                        fprintf(stderr, "no \"%s\" (x%zu) in %s after %.0f s\n", needle, times, d->log, seconds);
                        it_daemon_log_tail(d);
                        fail();
                }
                it_nap_ms(25);
        }
}

void it_daemon_start(it_proc *d, const char *config, const char *log, double seconds) {
        char **env;
        size_t n = 0, k = 0;
        pid_t parent = getpid();
        const char *argv[] = { it.bin, "run", "--config", config, NULL };

        memset(d, 0, sizeof(*d));
        snprintf(d->log, sizeof(d->log), "%s", log);
        /* A log may be appended to by a second run: wait for a new line. */
        size_t before = it_file_count(d->log, "started rules=");
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
        int fd = open(d->log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        int nul = open("/dev/null", O_RDWR | O_CLOEXEC);
        assert_true(fd >= 0 && nul >= 0);

        d->pid = fork();
        assert_true(d->pid >= 0);
        if (d->pid == 0) {
                /* Async-signal-safe calls only: the parent has threads. */
                prctl(PR_SET_PDEATHSIG, SIGKILL);
                if (getppid() != parent)
                        _exit(127);
                dup2(nul, 0);
                dup2(nul, 1);
                dup2(fd, 2);
                execve(it.bin, (char *const *) argv, env);
                _exit(127);
        }
        close(fd);
        close(nul);
        free(env);
        track(d->pid, true);
        /* Until it says so, its signal handlers are not in place: a SIGHUP
         * or SIGTERM would still kill it outright. */
        it_daemon_wait_log(d, "started rules=", before + 1, seconds);
}

void it_daemon_signal(it_proc *d, int sig) {
        it_daemon_check_alive(d);
        assert_int_equal(kill(d->pid, sig), 0);
}

int it_daemon_wait_exit(it_proc *d, double seconds, double *ret_took) {
        double t = it_now(), deadline = t + seconds;
        int code;

        while (it_daemon_poll(d, &code) == 1) {
                if (it_now() > deadline) {
                        fprintf(stderr, "the daemon did not exit within %.0f s\n", seconds);
                        it_daemon_log_tail(d);
                        kill(d->pid, SIGKILL);
                        fail();
                }
                it_nap_ms(10);
        }
        if (ret_took)
                *ret_took = it_now() - t;
        return code;
}

void it_daemon_stop(it_proc *d, double seconds) {
        double took;

        it_daemon_signal(d, SIGTERM);
        int code = it_daemon_wait_exit(d, seconds, &took);
        if (code != 0) {
                fprintf(stderr, "the daemon exited with %d on SIGTERM\n", code);
                it_daemon_log_tail(d);
        }
        assert_int_equal(code, 0);
        /* The wait notices an exit up to one nap late. */
        assert_true(took < seconds);
}

/* ---- comparing alert lists with replay's ---- */

typedef struct row {
        char rule[64], sensor[80], event[16], level[16], ts[40], id[200];
        char group[150];        /* what the order is promised within */
        char key[280];          /* alert_id|event|ts: one event, wherever it is */
        const char *json;
        size_t idx;
} row;

static int row_cmp(const void *a, const void *b) {
        const row *x = a, *y = b;
        int c = strcmp(x->group, y->group);
        if (c)
                return c;
        return x->idx < y->idx ? -1 : x->idx > y->idx;
}

static int key_cmp(const void *a, const void *b) {
        return strcmp(*(char *const *) a, *(char *const *) b);
}

static void row_parse(row *r, const char *json, size_t idx, it_alert_order order) {
        r->json = json;
        r->idx = idx;
        it_json_str(json, "rule", r->rule, sizeof(r->rule));
        it_json_str(json, "sensor", r->sensor, sizeof(r->sensor));
        it_json_str(json, "event", r->event, sizeof(r->event));
        it_json_str(json, "level", r->level, sizeof(r->level));
        it_json_str(json, "ts", r->ts, sizeof(r->ts));
        it_json_str(json, "alert_id", r->id, sizeof(r->id));
        /* Ids hold no blanks, so the blank keeps distinct pairs apart. */
        if (order == IT_PER_SENSOR)
                snprintf(r->group, sizeof(r->group), "%s", r->sensor);
        else
                snprintf(r->group, sizeof(r->group), "%s %s", r->rule, r->sensor);
        snprintf(r->key, sizeof(r->key), "%s|%s|%s", r->id, r->event, r->ts);
}

/* Sorted by group, each group's alerts in the order they were read. */
static row *rows_of(const it_strs *s, it_alert_order order) {
        row *r = calloc(s->n + 1, sizeof(*r));
        assert_non_null(r);
        for (size_t i = 0; i < s->n; i++)
                row_parse(&r[i], s->v[i], i, order);
        qsort(r, s->n, sizeof(*r), row_cmp);
        return r;
}

static bool same_event(const row *a, const row *b) {
        return !strcmp(a->rule, b->rule) && !strcmp(a->event, b->event) && !strcmp(a->level, b->level) &&
               !strcmp(a->ts, b->ts) && !strcmp(a->id, b->id);
}

static void print_seq(const char *label, const row *r, size_t n) {
        fprintf(stderr, "    %s (%zu):", label, n);
        for (size_t i = 0; i < n && i < 12; i++)
                fprintf(stderr, "\n      %s %s %s %s %s", r[i].rule, r[i].event, r[i].level, r[i].ts, r[i].id);
        fprintf(stderr, "%s\n", n > 12 ? "\n      ..." : "");
}

static const char **sorted_keys(const row *r, size_t n) {
        const char **k = calloc(n + 1, sizeof(*k));
        assert_non_null(k);
        for (size_t i = 0; i < n; i++)
                k[i] = r[i].key;
        qsort(k, n, sizeof(*k), key_cmp);
        return k;
}

/* How many of want's events are missing from got, and how many of got's
 * are extra (a second copy, or an event replay does not have). */
static void missing_extra(const row *a, size_t na, const row *b, size_t nb, size_t *ret_missing, size_t *ret_extra) {
        const char **ka = sorted_keys(a, na), **kb = sorted_keys(b, nb);
        size_t i = 0, j = 0, missing = 0, extra = 0;

        while (i < na || j < nb) {
                int c = i == na ? 1 : j == nb ? -1 : strcmp(ka[i], kb[j]);
                if (c == 0) {
                        i++;
                        j++;
                } else if (c < 0) {
                        missing++;
                        i++;
                } else {
                        extra++;
                        j++;
                }
        }
        free(ka);
        free(kb);
        *ret_missing = missing;
        *ret_extra = extra;
}

/* First the events, group by group, so that a failure says which groups
 * went wrong and how (missing, repeated, reordered); then the whole JSON of
 * each, so value and message too. */
void it_assert_alerts_equal(const char *what, it_alert_order order, const it_strs *want, const it_strs *got) {
        row *a = rows_of(want, order), *b = rows_of(got, order);
        size_t i = 0, j = 0, groups = 0, bad = 0, missing, extra, json_diff = 0;

        while (i < want->n || j < got->n) {
                const row *k = i == want->n ? &b[j] : j == got->n ? &a[i]
                               : strcmp(a[i].group, b[j].group) <= 0 ? &a[i] : &b[j];
                size_t i2 = i, j2 = j;
                while (i2 < want->n && !strcmp(a[i2].group, k->group))
                        i2++;
                while (j2 < got->n && !strcmp(b[j2].group, k->group))
                        j2++;
                bool same = i2 - i == j2 - j;
                for (size_t x = 0; same && x < i2 - i; x++)
                        same = same_event(&a[i + x], &b[j + x]);
                for (size_t x = 0; same && x < i2 - i; x++)
                        if (strcmp(a[i + x].json, b[j + x].json)) {
                                if (json_diff++ < 3)
                                        fprintf(stderr, "%s: %s: same event, other JSON\n  want: %s\n  got:  %s\n",
                                                what, k->group, a[i + x].json, b[j + x].json);
                        }
                if (!same && bad++ < 6) {
                        fprintf(stderr, "%s: %s differs:\n", what, k->group);
                        print_seq("replay", &a[i], i2 - i);
                        print_seq("daemon", &b[j], j2 - j);
                }
                groups++;
                i = i2;
                j = j2;
        }
        missing_extra(a, want->n, b, got->n, &missing, &extra);
        fprintf(stderr, "%s: %zu alerts expected, %zu got, over %zu %s: %zu differ, %zu events missing, %zu extra\n",
                what, want->n, got->n, groups, order == IT_PER_SENSOR ? "sensors" : "(rule, sensor) pairs", bad,
                missing, extra);
        free(a);
        free(b);
        assert_int_equal(bad, 0);
        assert_int_equal(json_diff, 0);
        assert_int_equal(got->n, want->n);
}

size_t it_count_missing(const it_strs *want, const it_strs *got) {
        row *a = rows_of(want, IT_PER_RULE_AND_SENSOR), *b = rows_of(got, IT_PER_RULE_AND_SENSOR);
        const char **kb = sorted_keys(b, got->n);
        size_t missing = 0;

        for (size_t k = 0; k < want->n; k++) {
                const char *key = a[k].key;
                if (!bsearch(&key, kb, got->n, sizeof(*kb), key_cmp))
                        missing++;
        }
        free(kb);
        free(a);
        free(b);
        return missing;
}

#ifdef IT_HARNESS_SERVERS

/* ---- stations ---- */

const char *const it_kind_names[IT_N_KINDS] = { "rain", "water_level", "landslide", "bridge" };

static it_station reg[512];
static size_t n_reg;

const it_station *it_find_station(const char *id) {
        for (size_t i = 0; i < n_reg; i++)
                if (!strcmp(reg[i].id, id))
                        return &reg[i];
        return NULL;
}

/* id,kind,... with a header line: enough to route a reading by its sensor. */
static void load_registry(void) {
        char *text = it_read_file_or_empty(it.stations, NULL);
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
                for (int k = 0; k < IT_N_KINDS; k++)
                        if (strlen(it_kind_names[k]) == kl && !strncmp(comma + 1, it_kind_names[k], kl))
                                reg[n_reg].kind = k;
                assert_true(reg[n_reg].kind >= 0);
                n_reg++;
        }
        free(text);
}

/* The bundled rules minus those using age() (rules/silence.yaml): in the
 * daemon those tick on wall time, in replay on the data's time, so they
 * legitimately differ on 2023 data. */
static void copy_rules(void) {
        char dir[600];
        DIR *dh;
        struct dirent *e;

        snprintf(it.rules_dir, sizeof(it.rules_dir), "%s/rules-no-age", it.tmpdir);
        assert_int_equal(mkdir(it.rules_dir, 0755), 0);
        snprintf(dir, sizeof(dir), "%s/rules", it.src);
        dh = opendir(dir);
        assert_non_null(dh);
        while ((e = readdir(dh))) {
                size_t n = strlen(e->d_name);
                char from[900], to[900];
                if (n < 6 || strcmp(e->d_name + n - 5, ".yaml"))
                        continue;
                snprintf(from, sizeof(from), "%s/%s", dir, e->d_name);
                char *text = it_read_file_or_empty(from, NULL);
                if (!strstr(text, "age(")) {
                        snprintf(to, sizeof(to), "%s/%s", it.rules_dir, e->d_name);
                        it_write_file(to, text);
                }
                free(text);
        }
        closedir(dh);
}

/* ---- the servers ---- */

static int delivery_errors;
static double test_started;
/* Set before a test stops a server and cleared once it is back, so that the
 * teardown restarts what a failed test left stopped. */
static bool kafka_stopped, redis_stopped;

/* The readers' Kafka handles, which a failed test leaves open. */
static rd_kafka_t *open_rk[8];

static void rk_track(rd_kafka_t *rk, bool add) {
        for (size_t i = 0; i < sizeof(open_rk) / sizeof(open_rk[0]); i++)
                if (open_rk[i] == (add ? NULL : rk)) {
                        open_rk[i] = add ? rk : NULL;
                        return;
                }
}

/* Runs one of the server scripts; its one line of stdout goes to out. */
static int script(const char *name, const char *cmd, const char *dir, char *out, size_t n) {
        char line[1024];
        FILE *p;

        snprintf(line, sizeof(line), "bash '%s/tests/integration/%s' %s '%s'", it.src, name, cmd, dir);
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

void it_kafka_stop(void) {
        kafka_stopped = true;
        assert_int_equal(script("kafka.sh", "stop", it.kafka_dir, NULL, 0), 0);
}

void it_kafka_start(void) {
        char addr[128];

        assert_int_equal(script("kafka.sh", "start", it.kafka_dir, addr, sizeof(addr)), 0);
        /* The daemon under test was configured with the old address. */
        assert_string_equal(addr, it.bootstrap);
        kafka_stopped = false;
}

void it_redis_stop(void) {
        redis_stopped = true;
        assert_int_equal(script("redis.sh", "stop", it.redis_dir, NULL, 0), 0);
}

void it_redis_start(void) {
        char port[32];

        assert_int_equal(script("redis.sh", "start", it.redis_dir, port, sizeof(port)), 0);
        it.redis_port = atoi(port);
        assert_true(it.redis_port > 0);
        redis_stopped = false;
}

static void stop_servers(void) {
        static bool done;
        if (done || !it.tmpdir[0])
                return;
        done = true;
        it_daemon_kill_all();
        if (it.kafka_dir[0])
                script("kafka.sh", "stop", it.kafka_dir, NULL, 0);
        if (it.redis_dir[0])
                script("redis.sh", "stop", it.redis_dir, NULL, 0);
}

static bool have(const char *tool) {
        char cmd[200];
        snprintf(cmd, sizeof(cmd), "command -v %s >/dev/null 2>&1", tool);
        return system(cmd) == 0;
}

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
        if (m->err) {
                fprintf(stderr, "test producer: delivery failed: %s\n", rd_kafka_err2str(m->err));
                delivery_errors++;
        }
}

/* The test's own clients ride out a broker restart like the daemon; their
 * connection errors are expected, not news. */
static void on_client_error(rd_kafka_t *rk, int err, const char *reason, void *opaque) {
        if (err == RD_KAFKA_RESP_ERR__FATAL)
                fprintf(stderr, "%s: fatal: %s\n", rd_kafka_name(rk), reason);
}

/* Quieter, and errors through on_client_error, where the broker is going
 * to be stopped under the test's clients. */
static void conf_client_logging(rd_kafka_conf_t *conf, const char *usual_level) {
        if (it.expect_broker_restarts) {
                it_kafka_conf_set(conf, "log_level", "2");
                rd_kafka_conf_set_error_cb(conf, on_client_error);
        } else
                it_kafka_conf_set(conf, "log_level", usual_level);
}

int it_servers_setup(const char *prefix, bool expect_broker_restarts) {
        char pid[32], port[32], err[512];

        if (it_init(prefix) < 0)
                return -1;
        it.expect_broker_restarts = expect_broker_restarts;
        signal(SIGPIPE, SIG_IGN);
        snprintf(it.stations, sizeof(it.stations), "%s/stations/miyun.csv", it.src);
        load_registry();
        copy_rules();

        static const char *const tools[] = { "bash", "java", "kcat", "redis-server", "redis-cli" };
        for (size_t i = 0; i < sizeof(tools) / sizeof(tools[0]); i++)
                if (!have(tools[i])) {
                        snprintf(it.unavailable, sizeof(it.unavailable),
                                 "%s not found; see tests/integration/README.md", tools[i]);
                        return 0;
                }

        /* The servers die with this process, however it ends. */
        snprintf(pid, sizeof(pid), "%d", (int) getpid());
        setenv("FENGHUO_OWNER_PID", pid, 1);
        atexit(stop_servers);
        snprintf(it.kafka_dir, sizeof(it.kafka_dir), "%s/kafka", it.tmpdir);
        snprintf(it.redis_dir, sizeof(it.redis_dir), "%s/redis", it.tmpdir);
        double t = it_now();
        if (script("kafka.sh", "start", it.kafka_dir, it.bootstrap, sizeof(it.bootstrap)) != 0 || !it.bootstrap[0]) {
                fprintf(stderr, "kafka.sh start failed\n");
                return -1;
        }
        if (script("redis.sh", "start", it.redis_dir, port, sizeof(port)) != 0 || !(it.redis_port = atoi(port))) {
                fprintf(stderr, "redis.sh start failed\n");
                return -1;
        }
        fprintf(stderr, "Kafka at %s and Redis at port %d in %.1f s\n", it.bootstrap, it.redis_port, it_now() - t);

        rd_kafka_conf_t *conf = rd_kafka_conf_new();
        it_kafka_conf_set(conf, "bootstrap.servers", it.bootstrap);
        it_kafka_conf_set(conf, "enable.idempotence", "true");
        it_kafka_conf_set(conf, "linger.ms", "5");
        conf_client_logging(conf, "4");
        rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
        it.producer = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
        if (!it.producer) {
                fprintf(stderr, "test producer: %s\n", err);
                return -1;
        }
        it.servers_up = true;
        return 0;
}

int it_servers_teardown(void) {
        if (it.producer) {
                rd_kafka_flush(it.producer, 5000);
                rd_kafka_destroy(it.producer);
                it.producer = NULL;
        }
        stop_servers();
        return it_remove_tmpdir();
}

int it_test_setup(void **state) {
        test_started = it_now();
        return 0;
}

int it_test_teardown(void **state) {
        char out[128];

        it_daemon_kill_all();
        for (size_t i = 0; i < sizeof(open_rk) / sizeof(open_rk[0]); i++)
                if (open_rk[i]) {
                        rd_kafka_consumer_close(open_rk[i]);
                        rd_kafka_destroy(open_rk[i]);
                        open_rk[i] = NULL;
                }
        /* A test that failed with a server stopped must not take it from the next. */
        if (kafka_stopped) {
                if (script("kafka.sh", "start", it.kafka_dir, out, sizeof(out)) == 0)
                        kafka_stopped = false;
                else
                        fprintf(stderr, "could not restart the broker\n");
        }
        if (redis_stopped && script("redis.sh", "start", it.redis_dir, out, sizeof(out)) == 0) {
                it.redis_port = atoi(out);
                redis_stopped = false;
        }
        fprintf(stderr, "(%.1f s)\n", it_now() - test_started);
        return 0;
}

/* ---- Kafka ---- */

void it_kafka_conf_set(rd_kafka_conf_t *conf, const char *name, const char *value) {
        char err[512];
        if (rd_kafka_conf_set(conf, name, value, err, sizeof(err)) != RD_KAFKA_CONF_OK) {
                fprintf(stderr, "%s=%s: %s\n", name, value, err);
                fail();
        }
}

int it_partitions_ready(rd_kafka_t *rk, const char *topic) {
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

void it_create_topic(const char *name, int partitions, const char *cleanup_policy) {
        char err[512];
        rd_kafka_NewTopic_t *nt = rd_kafka_NewTopic_new(name, partitions, 1, err, sizeof(err));
        rd_kafka_AdminOptions_t *opt = rd_kafka_AdminOptions_new(it.producer, RD_KAFKA_ADMIN_OP_CREATETOPICS);
        rd_kafka_queue_t *q = rd_kafka_queue_new(it.producer);
        size_t cnt = 0;

        assert_non_null(nt);
        if (cleanup_policy)
                assert_int_equal(rd_kafka_NewTopic_set_config(nt, "cleanup.policy", cleanup_policy), 0);
        rd_kafka_AdminOptions_set_operation_timeout(opt, 30000, err, sizeof(err));
        rd_kafka_CreateTopics(it.producer, &nt, 1, opt, q);
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

        double deadline = it_now() + 30;
        while (it_partitions_ready(it.producer, name) != partitions) {
                if (it_now() > deadline) {
                        fprintf(stderr, "topic %s: partitions without a leader after 30 s\n", name);
                        fail();
                }
                it_nap_ms(50);
        }
}

void it_produce(const char *topic, const char *key, const char *value, size_t len) {
        rd_kafka_resp_err_t err;

        do {
                err = rd_kafka_producev(it.producer, RD_KAFKA_V_TOPIC(topic),
                                        RD_KAFKA_V_KEY(key, key ? strlen(key) : 0),
                                        RD_KAFKA_V_VALUE((void *) value, len),
                                        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
                if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL)
                        rd_kafka_poll(it.producer, 10);
        } while (err == RD_KAFKA_RESP_ERR__QUEUE_FULL);
        assert_int_equal(err, RD_KAFKA_RESP_ERR_NO_ERROR);
        /* Serves delivery reports as they come, so that a failure shows up
         * near its cause. */
        rd_kafka_poll(it.producer, 0);
}

void it_flush(int timeout_ms) {
        assert_int_equal(rd_kafka_flush(it.producer, timeout_ms), RD_KAFKA_RESP_ERR_NO_ERROR);
        assert_int_equal(delivery_errors, 0);
}

void it_reader_open(it_reader *r, const char *topic) {
        rd_kafka_conf_t *conf = rd_kafka_conf_new();
        char err[512], group[160];

        memset(r, 0, sizeof(*r));
        snprintf(r->topic, sizeof(r->topic), "%s", topic);
        /* librdkafka wants a group id to consume, though nothing joins it. */
        snprintf(group, sizeof(group), "test-reader-%s-%d", topic, (int) getpid());
        it_kafka_conf_set(conf, "bootstrap.servers", it.bootstrap);
        it_kafka_conf_set(conf, "group.id", group);
        it_kafka_conf_set(conf, "enable.auto.commit", "false");
        it_kafka_conf_set(conf, "fetch.wait.max.ms", "100");
        conf_client_logging(conf, "3");
        r->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err));
        assert_non_null(r->rk);
        rk_track(r->rk, true);
        rd_kafka_poll_set_consumer(r->rk);
        double deadline = it_now() + 30;
        while ((r->parts = it_partitions_ready(r->rk, topic)) <= 0) {
                assert_true(it_now() < deadline);
                it_nap_ms(50);
        }
        assert_true(r->parts <= 64);
        rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(r->parts);
        for (int p = 0; p < r->parts; p++)
                rd_kafka_topic_partition_list_add(l, topic, p)->offset = RD_KAFKA_OFFSET_BEGINNING;
        assert_int_equal(rd_kafka_assign(r->rk, l), RD_KAFKA_RESP_ERR_NO_ERROR);
        rd_kafka_topic_partition_list_destroy(l);
}

static void header(rd_kafka_message_t *m, const char *name, it_strs *into) {
        rd_kafka_headers_t *h = NULL;
        const void *v = NULL;
        size_t n = 0;

        if (rd_kafka_message_headers(m, &h) == RD_KAFKA_RESP_ERR_NO_ERROR &&
            rd_kafka_header_get_last(h, name, &v, &n) == RD_KAFKA_RESP_ERR_NO_ERROR && v)
                it_strs_add(into, v, n);
        else
                it_strs_add(into, "", 0);
}

void it_reader_poll(it_reader *r, int timeout_ms) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(r->rk, timeout_ms);

        while (m) {
                if (m->err) {
                        if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF && !it.expect_broker_restarts)
                                fprintf(stderr, "reader %s: %s\n", r->topic, rd_kafka_message_errstr(m));
                } else {
                        it_strs_add(&r->value, m->payload ? m->payload : "", m->payload ? m->len : 0);
                        it_strs_add(&r->key, m->key ? m->key : "", m->key ? m->key_len : 0);
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

void it_reader_drain(it_reader *r) {
        int64_t hi[64];
        double deadline = it_now() + 30;

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
                assert_true(it_now() < deadline);
                it_reader_poll(r, 100);
        }
}

void it_reader_close(it_reader *r) {
        if (r->rk) {
                rk_track(r->rk, false);
                rd_kafka_consumer_close(r->rk);
                rd_kafka_destroy(r->rk);
        }
        it_strs_free(&r->value);
        it_strs_free(&r->key);
        it_strs_free(&r->reason);
        it_strs_free(&r->src_topic);
        r->rk = NULL;
}

/* ---- Redis (hiredis, synchronous) ---- */

/* NULL when Redis does not answer. */
static redisContext *redis_open(void) {
        struct timeval tv = { 5, 0 };
        redisContext *c = redisConnectWithTimeout("127.0.0.1", it.redis_port, tv);
        if (c && c->err) {
                redisFree(c);
                return NULL;
        }
        return c;
}

long long it_redis_xlen(const char *stream) {
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

it_strs it_redis_stream(const char *stream) {
        redisContext *c = redis_open();
        it_strs s = { 0 };

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
                it_strs_add(&s, kv->element[1]->str, kv->element[1]->len);
        }
        freeReplyObject(r);
        redisFree(c);
        return s;
}

void it_redis_hash(const char *hash, it_strs *fields, it_strs *values) {
        redisContext *c = redis_open();

        assert_non_null(c);
        redisReply *r = redisCommand(c, "HGETALL %s", hash);
        assert_non_null(r);
        assert_int_equal(r->type, REDIS_REPLY_ARRAY);
        for (size_t i = 0; i + 1 < r->elements; i += 2) {
                it_strs_add(fields, r->element[i]->str, r->element[i]->len);
                it_strs_add(values, r->element[i + 1]->str, r->element[i + 1]->len);
        }
        freeReplyObject(r);
        redisFree(c);
}

/* ---- a test's environment ---- */

void it_env_init(it_env *t, const char *name, int in_partitions, const char *rules, bool state_topic) {
        memset(t, 0, sizeof(*t));
        snprintf(t->name, sizeof(t->name), "%s", name);
        snprintf(t->dir, sizeof(t->dir), "%s/%s", it.tmpdir, name);
        assert_int_equal(mkdir(t->dir, 0755), 0);
        for (int k = 0; k < IT_N_KINDS; k++) {
                snprintf(t->topic[k], sizeof(t->topic[k]), "%s.%s", name, it_kind_names[k]);
                it_create_topic(t->topic[k], in_partitions, NULL);
        }
        snprintf(t->alerts, sizeof(t->alerts), "%s.alerts", name);
        snprintf(t->dlq, sizeof(t->dlq), "%s.deadletter", name);
        it_create_topic(t->alerts, 4, NULL);
        it_create_topic(t->dlq, 1, NULL);
        if (state_topic) {
                snprintf(t->state_topic, sizeof(t->state_topic), "%s.state", name);
                it_create_topic(t->state_topic, 3, "compact");
        }
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
}

void it_config_write(const it_env *t, const char *path, const it_config *c) {
        FILE *f = fopen(path, "we");
        assert_non_null(f);
        fprintf(f,
                "rules: \"%s\"\n"
                "stations: \"%s\"\n"
                "state_dir: \"%s\"\n",
                t->rules, it.stations, c->state_dir);
        if (c->checkpoint_interval)
                fprintf(f, "checkpoint_interval: %s\n", c->checkpoint_interval);
        if (c->shards)
                fprintf(f, "shards: %d\n", c->shards);
        fprintf(f, "metrics_file: \"%s/metrics.prom\"\n", c->state_dir);
        fprintf(f,
                "stdout: false\n"
                "log_level: info\n"
                "stats_interval: 0s\n"
                "shutdown_timeout: 10s\n"
                "kafka:\n"
                "  brokers: \"%s\"\n"
                "  group_id: %s\n"
                "  alerts_topic: %s\n"
                "  dead_letter_topic: %s\n",
                it.bootstrap, t->group, t->alerts, t->dlq);
        if (t->state_topic[0])
                fprintf(f, "  state_topic: %s\n", t->state_topic);
        if (c->cap_topic)
                fprintf(f, "  cap_topic: %s\n", c->cap_topic);
        fprintf(f, "  topics:\n");
        for (int k = 0; k < IT_N_KINDS; k++)
                fprintf(f, "    %s: %s\n", it_kind_names[k], t->topic[k]);
        /* The broker's minimum session, so that a killed instance's
         * partitions are given out again soon: 6 s after its last heartbeat,
         * and with frequent heartbeats that is close to 6 s after the kill. */
        fprintf(f, "  properties:\n    log_level: \"4\"\n"
                   "  consumer_properties:\n    session.timeout.ms: \"6000\"\n");
        if (c->heartbeat_ms)
                fprintf(f, "    heartbeat.interval.ms: \"%d\"\n", c->heartbeat_ms);
        if (c->redis_port)
                fprintf(f, "redis:\n  host: 127.0.0.1\n  port: %d\n  stream: \"%s\"\n  active_hash: \"%s\"\n"
                           "  channel: \"%s\"\n",
                        c->redis_port, t->stream, t->hash, t->channel);
        assert_int_equal(fclose(f), 0);
}

/* ---- input ---- */

static bool blank(const char *p, size_t n) {
        for (size_t i = 0; i < n; i++)
                if (p[i] != ' ' && p[i] != '\t' && p[i] != '\r')
                        return false;
        return true;
}

void it_simulate(const it_env *t, unsigned seed, it_input *in) {
        char s[16], path[600];
        size_t len;

        snprintf(s, sizeof(s), "%u", seed);
        snprintf(path, sizeof(path), "%s/input.jsonl", t->dir);
        const char *argv[] = { it.bin, "simulate", "--stations", it.stations, "--duration", "1d", "--step", "10m",
                               "--bad", "0.01", "--seed", s, NULL };
        assert_int_equal(it_run(argv, NULL, path, NULL), 0);
        in->text = it_read_file_or_empty(path, &len);
        in->line = (it_strs) { 0 };
        for (size_t i = 0; i < len;) {
                char *nl = memchr(in->text + i, '\n', len - i);
                size_t n = nl ? (size_t) (nl - (in->text + i)) : len - i;
                if (!blank(in->text + i, n))
                        it_strs_add(&in->line, in->text + i, n);
                i += n + 1;
        }
}

void it_input_free(it_input *in) {
        free(in->text);
        it_strs_free(&in->line);
}

void it_produce_line(const it_env *t, const char *line) {
        char sensor[80];
        const it_station *st;

        it_json_str(line, "sensor", sensor, sizeof(sensor));
        st = sensor[0] ? it_find_station(sensor) : NULL;
        it_produce(t->topic[st ? st->kind : 0], st ? sensor : NULL, line, strlen(line));
}

void it_produce_range(const it_env *t, const it_input *in, size_t from, size_t to) {
        for (size_t i = from; i < to; i++)
                it_produce_line(t, in->line.v[i]);
        it_flush(30000);
}

it_strs it_replay(const it_env *t, const it_input *in, size_t n, const char *tag, size_t *ret_rejected) {
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
        const char *argv[] = { it.bin, "replay", "--rules", t->rules, "--stations", it.stations, in_path, NULL };
        assert_int_equal(it_run(argv, NULL, out_path, err_path), 0);
        char *out = it_read_file_or_empty(out_path, NULL);
        it_strs s = it_strs_lines(out);
        free(out);
        if (ret_rejected) {
                char *err = it_read_file_or_empty(err_path, NULL);
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

#endif /* IT_HARNESS_SERVERS */
