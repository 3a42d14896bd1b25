/* The web console's HTTP API against a real redis-server
 * (tests/integration/redis.sh), with alert events written by the daemon's
 * own Redis sink, as `fenghuo run` writes them. The HTTP client is a plain
 * socket: what a browser sends, nothing more. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <setjmp.h>
#include <cmocka.h>

#include <hiredis/hiredis.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <uv.h>

#include "fenghuo/load.h"
#include "console.h"
#include "console_internal.h"
#include "it_harness.h"
#include "redis_sink.h"

static struct {
        bool up;
        char why[256];
        char redis_dir[320];
        int redis_port;
        fh_engine *e;
        char users[400];
        char *hash;            /* of the test password */
        fh_console_config cfg;
        fh_console *con;
        int port;
} w;

/* ---- Redis ---------------------------------------------------------------- */

static redisContext *rclient(void) {
        struct timeval tv = { 5, 0 };
        redisContext *c = redisConnectWithTimeout("127.0.0.1", w.redis_port, tv);
        assert_non_null(c);
        assert_int_equal(c->err, 0);
        redisSetTimeout(c, tv);
        return c;
}

static redisReply *rq(const char *fmt, ...) {
        redisContext *c = rclient();
        va_list ap;
        va_start(ap, fmt);
        redisReply *rep = redisvCommand(c, fmt, ap);
        va_end(ap);
        redisFree(c);
        assert_non_null(rep);
        return rep;
}

static bool sink_idle(fh_redis *r) {
        return fh_redis_backlog(r) == 0;
}

static void on_closed(void *userdata, size_t undelivered) {
        *(bool *) userdata = true;
}

/* One alert event through the daemon's sink (the Lua script with the
 * silence check), waiting until Redis has it. */
static void daemon_writes(const char *rule, const char *sensor, const char *event, const char *level,
                          double value, long long raised_ms) {
        uv_loop_t loop;
        fh_redis_config rc;
        fh_redis *r;
        char json[1024], field[128], id[256];
        bool closed = false;

        snprintf(json, sizeof(json),
                 "{\"alert_id\":\"%s:%s:%lld\",\"event\":\"%s\",\"rule\":\"%s\",\"sensor\":\"%s\","
                 "\"level\":\"%s\",\"previous\":\"none\",\"severity\":1,\"ts\":\"2026-12-04T10:00:00+08:00\","
                 "\"value\":%g,\"title\":\"暴雨预警\",\"station\":{\"name\":\"石城镇黄峪口\",\"town\":\"石城镇\"},"
                 "\"message\":\"test\"}",
                 rule, sensor, raised_ms, event, rule, sensor, level, value);
        snprintf(field, sizeof(field), "%s:%s", rule, sensor);
        snprintf(id, sizeof(id), "%s:%s:%lld|%s|%g", rule, sensor, raised_ms, event, value);
        assert_int_equal(uv_loop_init(&loop), 0);
        fh_redis_config_defaults(&rc);
        rc.port = w.redis_port;
        assert_int_equal(fh_redis_new(&r, &loop, &rc, NULL, NULL), 0);
        assert_int_equal(fh_redis_send_once(r, json, strlen(json), field, level, !strcmp(level, "none"), id, NULL), 0);
        double until = it_now() + 10;
        while (!sink_idle(r) && it_now() < until)
                uv_run(&loop, UV_RUN_ONCE);
        assert_true(sink_idle(r));
        fh_redis_close(r, 0, on_closed, &closed);
        while (!closed)
                uv_run(&loop, UV_RUN_ONCE);
        uv_run(&loop, UV_RUN_DEFAULT);
        assert_int_equal(uv_loop_close(&loop), 0);
}

/* ---- HTTP ----------------------------------------------------------------- */

typedef struct http {
        int status;
        char head[4096];
        char *body;
} http;

static int http_connect(void) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t) w.port) };
        inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
        assert_true(fd >= 0);
        assert_int_equal(connect(fd, (struct sockaddr *) &sa, sizeof(sa)), 0);
        return fd;
}

static void send_all(int fd, const char *s, size_t n) {
        while (n) {
                ssize_t k = write(fd, s, n);
                assert_true(k > 0);
                s += k;
                n -= (size_t) k;
        }
}

/* method url; extra: more header lines ("Name: value\r\n"...), may be "". */
static http request(const char *method, const char *url, const char *extra, const char *body) {
        char req[8192];
        int fd = http_connect();
        int n = snprintf(req, sizeof(req),
                         "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n%s"
                         "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: %zu\r\n\r\n%s",
                         method, url, extra, body ? strlen(body) : 0, body ? body : "");
        send_all(fd, req, (size_t) n);
        size_t len = 0, cap = 1 << 16;
        char *all = malloc(cap);
        ssize_t k;
        while ((k = read(fd, all + len, cap - len - 1)) > 0) {
                len += (size_t) k;
                if (len + 1 == cap)
                        all = realloc(all, cap *= 2);
        }
        close(fd);
        all[len] = '\0';
        http h = { 0 };
        char *sep = strstr(all, "\r\n\r\n");
        assert_non_null(sep);
        *sep = '\0';
        snprintf(h.head, sizeof(h.head), "%s", all);
        h.body = strdup(sep + 4);
        free(all);
        assert_int_equal(sscanf(h.head, "HTTP/1.1 %d", &h.status), 1);
        return h;
}

static void http_free(http *h) {
        free(h->body);
}

/* Logs in; the "Cookie: ...\r\n" header line for later requests. */
static void login(const char *user, char *cookie, size_t n) {
        char body[128];
        snprintf(body, sizeof(body), "user=%s&password=s3cret+%%E5%%AF%%86", user);
        http h = request("POST", "/api/login", "X-Fenghuo: 1\r\n", body);
        assert_int_equal(h.status, 200);
        const char *c = strstr(h.head, "Set-Cookie: fh_session=");
        assert_non_null(c);
        assert_non_null(strstr(c, "HttpOnly"));
        assert_non_null(strstr(c, "SameSite=Strict"));
        snprintf(cookie, n, "Cookie: fh_session=%.64s\r\nX-Fenghuo: 1\r\n", c + 23);
        http_free(&h);
}

/* A login attempt; extra: header lines. The status, and Retry-After or -1. */
static int try_login(const char *user, const char *password, const char *extra, int *retry_after) {
        char body[256], hdr[256];
        snprintf(body, sizeof(body), "user=%s&password=%s", user, password);
        snprintf(hdr, sizeof(hdr), "X-Fenghuo: 1\r\n%s", extra);
        http h = request("POST", "/api/login", hdr, body);
        const char *ra = strstr(h.head, "Retry-After: ");
        if (retry_after)
                *retry_after = ra ? atoi(ra + 13) : -1;
        int status = h.status;
        http_free(&h);
        return status;
}

#define RIGHT "s3cret+%E5%AF%86"

/* What the console logs meanwhile (its standard error). */
static int log_fd = -1;
static char log_path[600];

static void log_capture(void) {
        snprintf(log_path, sizeof(log_path), "%s/console.log", it.tmpdir);
        fflush(stderr);
        log_fd = dup(2);
        int fd = open(log_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        assert_true(fd >= 0);
        dup2(fd, 2);
        close(fd);
}

static char *log_captured(void) {
        fflush(stderr);
        dup2(log_fd, 2);
        close(log_fd);
        log_fd = -1;
        char *text = it_read_file(log_path, NULL);
        fputs(text, stderr);
        return text;
}

static void restart_console(void) {
        char err[256];
        fh_console_stop(w.con);
        assert_int_equal(fh_console_start(&w.con, &w.cfg, w.e, err, sizeof(err)), 0);
        w.port = fh_console_port(w.con);
}

/* Replaced as an editor or a deployment would: a new file renamed over. */
static void write_users(const char *path, const char *fmt, ...) {
        char tmp[700], text[4096];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(text, sizeof(text), fmt, ap);
        va_end(ap);
        snprintf(tmp, sizeof(tmp), "%s.new", path);
        it_write_file(tmp, text);
        assert_int_equal(rename(tmp, path), 0);
}

/* ---- fixtures ------------------------------------------------------------- */

static int group_setup(void **state) {
        fh_diags d = FH_DIAGS_NULL;
        char path[600], out[600];

        if (it_init("fh-console") < 0)
                return -1;
        if (system("command -v redis-server >/dev/null 2>&1") != 0) {
                snprintf(w.why, sizeof(w.why), "redis-server not found");
                return 0;
        }
        snprintf(w.redis_dir, sizeof(w.redis_dir), "%s/redis", it.tmpdir);
        snprintf(path, sizeof(path), "%s/tests/integration/redis.sh", it.src);
        snprintf(out, sizeof(out), "%s/redis.port", it.tmpdir);
        const char *argv[] = { "/bin/bash", path, "start", w.redis_dir, NULL };
        if (it_run(argv, NULL, out, NULL) != 0)
                return -1;
        char *port = it_read_file(out, NULL);
        w.redis_port = atoi(port);
        free(port);

        char stations[600];
        snprintf(path, sizeof(path), "%s/rules", it.src);
        snprintf(stations, sizeof(stations), "%s/stations/miyun.csv", it.src);
        if (fh_load_engine(path, stations, NULL, &w.e, &d) < 0)
                return -1;
        fh_diags_clear(&d);

        char *hash = fh_console_hash_password("s3cret 密");
        assert_non_null(hash);
        assert_true(!strncmp(hash, "$y$", 3));  /* yescrypt */
        snprintf(w.users, sizeof(w.users), "%s/users", it.tmpdir);
        FILE *f = fopen(w.users, "w");
        fprintf(f, "# operators\nop:%s\nwatcher:%s:viewer\n", hash, hash);
        fclose(f);
        w.hash = hash;
        w.up = true;
        return 0;
}

static int group_teardown(void **state) {
        if (w.redis_dir[0]) {
                char path[600];
                snprintf(path, sizeof(path), "%s/tests/integration/redis.sh", it.src);
                const char *argv[] = { "/bin/bash", path, "stop", w.redis_dir, NULL };
                it_run(argv, NULL, NULL, NULL);
        }
        fh_engine_free(w.e);
        free(w.hash);
        it_remove_tmpdir();
        return 0;
}

static int setup(void **state) {
        if (!w.up)
                return 0;
        freeReplyObject(rq("FLUSHALL"));
        w.cfg = (fh_console_config) {
                .listen = "127.0.0.1", .port = 0, .users_file = w.users, .session_ttl_ms = 3600000,
                .key_prefix = "fenghuo:console:", .redis_host = "127.0.0.1", .redis_port = w.redis_port,
                .channel = "fenghuo:alerts", .stream = "fenghuo:alerts:stream",
                .active_hash = "fenghuo:alerts:active", .tz_offset_min = 480,
        };
        char err[256];
        assert_int_equal(fh_console_start(&w.con, &w.cfg, w.e, err, sizeof(err)), 0);
        w.port = fh_console_port(w.con);
        assert_true(w.port > 0);
        return 0;
}

static int teardown(void **state) {
        fh_console_stop(w.con);
        w.con = NULL;
        return 0;
}

#define NEED_REDIS()                                                    \
        do {                                                            \
                if (!w.up) {                                            \
                        fprintf(stderr, "skipped: %s\n", w.why);        \
                        skip();                                         \
                }                                                       \
        } while (0)

/* ---- tests ---------------------------------------------------------------- */

static void test_pages_are_served_from_the_binary(void **state) {
        NEED_REDIS();
        http h = request("GET", "/", "", NULL);
        assert_int_equal(h.status, 200);
        assert_non_null(strstr(h.head, "text/html"));
        assert_non_null(strstr(h.body, "密云区预警指挥台"));
        /* Nothing is loaded from elsewhere. */
        assert_null(strstr(h.body, "http://"));
        assert_null(strstr(h.body, "https://"));
        http_free(&h);
        h = request("GET", "/app.js", "", NULL);
        assert_int_equal(h.status, 200);
        assert_non_null(strstr(h.head, "text/javascript"));
        http_free(&h);
        h = request("GET", "/etc/passwd", "", NULL);
        assert_int_equal(h.status, 404);
        http_free(&h);
}

static void test_login_needs_the_right_password_and_gives_a_session(void **state) {
        NEED_REDIS();
        char cookie[256];

        http h = request("GET", "/api/active", "", NULL);
        assert_int_equal(h.status, 401);
        http_free(&h);
        h = request("POST", "/api/login", "X-Fenghuo: 1\r\n", "user=op&password=wrong");
        assert_int_equal(h.status, 401);
        assert_null(strstr(h.head, "Set-Cookie"));
        http_free(&h);
        h = request("POST", "/api/login", "X-Fenghuo: 1\r\n", "user=nobody&password=s3cret+%E5%AF%86");
        assert_int_equal(h.status, 401);
        http_free(&h);
        /* A form posted from another site cannot carry the custom header. */
        h = request("POST", "/api/login", "", "user=op&password=s3cret+%E5%AF%86");
        assert_int_equal(h.status, 403);
        http_free(&h);

        login("op", cookie, sizeof(cookie));
        h = request("GET", "/api/me", cookie, NULL);
        assert_int_equal(h.status, 200);
        assert_non_null(strstr(h.body, "\"user\":\"op\""));
        assert_non_null(strstr(h.body, "\"role\":\"operator\""));
        http_free(&h);

        /* The session lives in Redis, with the configured lifetime. */
        redisReply *rep = rq("KEYS fenghuo:console:session:*");
        assert_int_equal(rep->elements, 1);
        redisReply *ttl = rq("TTL %s", rep->element[0]->str);
        assert_true(ttl->integer > 3500 && ttl->integer <= 3600);
        freeReplyObject(ttl);
        freeReplyObject(rep);

        h = request("POST", "/api/logout", cookie, "");
        assert_int_equal(h.status, 200);
        http_free(&h);
        h = request("GET", "/api/me", cookie, NULL);
        assert_int_equal(h.status, 401);
        http_free(&h);
}

static void test_an_alert_reaches_the_live_stream_within_a_second_and_the_active_list(void **state) {
        NEED_REDIS();
        char cookie[256], req[512], buf[16384] = "";
        size_t len = 0;

        login("watcher", cookie, sizeof(cookie));
        int fd = http_connect();
        int n = snprintf(req, sizeof(req), "GET /api/events HTTP/1.1\r\nHost: x\r\n%s\r\n", cookie);
        send_all(fd, req, (size_t) n);
        /* Connected once the first event is there. */
        double until = it_now() + 5;
        while (!strstr(buf, "event: hello") && it_now() < until) {
                struct pollfd p = { fd, POLLIN, 0 };
                if (poll(&p, 1, 100) == 1) {
                        ssize_t k = read(fd, buf + len, sizeof(buf) - len - 1);
                        assert_true(k > 0);
                        len += (size_t) k;
                        buf[len] = '\0';
                }
        }
        assert_non_null(strstr(buf, "event: hello"));

        double t0 = it_now();
        daemon_writes("rainstorm", "MY-RG-0001", "raised", "red", 112.5, 1764813600000LL);
        while (!strstr(buf, "event: alert") && it_now() < t0 + 1.0) {
                struct pollfd p = { fd, POLLIN, 0 };
                if (poll(&p, 1, 20) == 1) {
                        ssize_t k = read(fd, buf + len, sizeof(buf) - len - 1);
                        assert_true(k > 0);
                        len += (size_t) k;
                        buf[len] = '\0';
                }
        }
        close(fd);
        const char *ev = strstr(buf, "event: alert\ndata: ");
        assert_non_null(ev);
        assert_non_null(strstr(ev, "\"alert_id\":\"rainstorm:MY-RG-0001:1764813600000\""));

        http h = request("GET", "/api/active", cookie, NULL);
        assert_int_equal(h.status, 200);
        assert_non_null(strstr(h.body, "\"field\":\"rainstorm:MY-RG-0001\""));
        assert_non_null(strstr(h.body, "\"value\":112.5"));
        assert_non_null(strstr(h.body, "\"unit\":\"mm\""));
        /* rules/rain.yaml: red is sum(rain_mm, 3h) >= 100. */
        assert_non_null(strstr(h.body, "\"red\":{\"op\":\">=\",\"value\":100}"));
        /* Yellow compares the 6 h sum, not the value (the 3 h sum): no
         * threshold to set it against, only its condition. */
        assert_null(strstr(h.body, "\"yellow\":{\"op\""));
        assert_non_null(strstr(h.body, "\"yellow\":\"sum(rain_mm, 6h) >= 50\""));
        assert_non_null(strstr(h.body, "\"ack\":null"));
        assert_non_null(strstr(h.body, "\"silenced\":null"));
        http_free(&h);

        /* A viewer can look but not act. */
        h = request("POST", "/api/ack", cookie, "alert_id=rainstorm%3AMY-RG-0001%3A1764813600000");
        assert_int_equal(h.status, 403);
        http_free(&h);
}

static void test_an_acknowledgement_records_who_when_and_the_note(void **state) {
        NEED_REDIS();
        char cookie[256];

        daemon_writes("rainstorm", "MY-RG-0001", "raised", "red", 112.5, 1764813600000LL);
        login("op", cookie, sizeof(cookie));
        long long before = fh_console_now_ms();
        http h = request("POST", "/api/ack", cookie,
                         "alert_id=rainstorm%3AMY-RG-0001%3A1764813600000&note=%E5%B7%B2%E9%80%9A%E7%9F%A5%E9%95%87%E9%87%8C");
        assert_int_equal(h.status, 200);
        http_free(&h);
        h = request("GET", "/api/active", cookie, NULL);
        const char *ack = strstr(h.body, "\"ack\":{");
        assert_non_null(ack);
        assert_non_null(strstr(ack, "\"user\":\"op\""));
        assert_non_null(strstr(ack, "\"note\":\"已通知镇里\""));
        const char *ts = strstr(ack, "\"ts\":");
        assert_non_null(ts);
        assert_true(atoll(ts + 5) >= before && atoll(ts + 5) <= fh_console_now_ms());
        http_free(&h);
        redisReply *rep = rq("TTL fenghuo:console:ack:rainstorm:MY-RG-0001:1764813600000");
        assert_true(rep->integer > 0);
        freeReplyObject(rep);

        h = request("POST", "/api/ack", cookie, "note=x");
        assert_int_equal(h.status, 400);
        http_free(&h);
}

static void test_a_silenced_station_is_marked_and_its_sms_channel_stays_quiet(void **state) {
        NEED_REDIS();
        char cookie[256];
        redisReply *rep;

        login("op", cookie, sizeof(cookie));
        http h = request("POST", "/api/silence", cookie, "scope=sensor&id=MY-RG-0001&minutes=60&note=%E6%A3%80%E4%BF%AE");
        assert_int_equal(h.status, 200);
        http_free(&h);
        rep = rq("PTTL fenghuo:alerts:silence:sensor:MY-RG-0001");
        assert_true(rep->integer > 3590000 && rep->integer <= 3600000);
        freeReplyObject(rep);

        redisContext *sub = rclient();
        rep = redisCommand(sub, "SUBSCRIBE fenghuo:alerts:red fenghuo:alerts");
        freeReplyObject(rep);
        assert_int_equal(redisGetReply(sub, (void **) &rep), REDIS_OK);
        freeReplyObject(rep);
        daemon_writes("rainstorm", "MY-RG-0001", "raised", "red", 112.5, 1764813600000LL);
        daemon_writes("rainstorm", "MY-RG-0002", "raised", "red", 101, 1764813600000LL);
        /* The silenced one only on the all-events channel, marked with who
         * silenced it and until when; the other on both, unmarked. */
        const char *want[][2] = { { "fenghuo:alerts", "MY-RG-0001" }, { "fenghuo:alerts", "MY-RG-0002" },
                                  { "fenghuo:alerts:red", "MY-RG-0002" } };
        for (size_t i = 0; i < 3; i++) {
                assert_int_equal(redisGetReply(sub, (void **) &rep), REDIS_OK);
                assert_string_equal(rep->element[1]->str, want[i][0]);
                assert_non_null(strstr(rep->element[2]->str, want[i][1]));
                const char *mark = strstr(rep->element[2]->str, ",\"silenced\":true,\"silenced_by\":\"op\",\"silenced_until\":");
                if (i == 0) {
                        assert_non_null(mark);
                        redisReply *pttl = rq("PTTL fenghuo:alerts:silence:sensor:MY-RG-0001");
                        long long until = atoll(mark + 53), expect = fh_console_now_ms() + pttl->integer;
                        assert_true(until > expect - 5000 && until < expect + 5000);
                        freeReplyObject(pttl);
                } else
                        assert_null(strstr(rep->element[2]->str, "silenced"));
                freeReplyObject(rep);
        }
        redisFree(sub);
        /* The station page's history is the stream: the event is marked there too. */
        h = request("GET", "/api/station?id=MY-RG-0001", cookie, NULL);
        assert_non_null(strstr(h.body, "\"silenced\":true,\"silenced_by\":\"op\""));
        http_free(&h);

        h = request("GET", "/api/active", cookie, NULL);
        const char *one = strstr(h.body, "\"field\":\"rainstorm:MY-RG-0001\"");
        const char *two = strstr(h.body, "\"field\":\"rainstorm:MY-RG-0002\"");
        assert_non_null(one);
        assert_non_null(two);
        const char *s1 = strstr(one, "\"silenced\":"), *s2 = strstr(two, "\"silenced\":");
        assert_true(!strncmp(s1, "\"silenced\":{\"scope\":\"sensor\",\"id\":\"MY-RG-0001\"", 46));
        assert_true(!strncmp(s2, "\"silenced\":null", 15));
        http_free(&h);
        h = request("GET", "/api/silences", cookie, NULL);
        assert_non_null(strstr(h.body, "\"note\":\"检修\""));
        http_free(&h);

        h = request("POST", "/api/silence", cookie, "scope=sensor&id=NOPE&minutes=60");
        assert_int_equal(h.status, 400);
        http_free(&h);
        h = request("POST", "/api/silence", cookie, "scope=sensor&id=MY-RG-0001&minutes=0");
        assert_int_equal(h.status, 400);
        http_free(&h);

        h = request("POST", "/api/unsilence", cookie, "scope=sensor&id=MY-RG-0001");
        assert_int_equal(h.status, 200);
        http_free(&h);
        rep = rq("EXISTS fenghuo:alerts:silence:sensor:MY-RG-0001");
        assert_int_equal(rep->integer, 0);
        freeReplyObject(rep);
        h = request("GET", "/api/silences", cookie, NULL);
        assert_string_equal(h.body, "[]");
        http_free(&h);
}

static void test_the_station_page_has_thresholds_and_the_alert_history(void **state) {
        NEED_REDIS();
        char cookie[256];

        daemon_writes("rainstorm", "MY-RG-0001", "raised", "yellow", 52, 1764813600000LL);
        daemon_writes("rainstorm", "MY-RG-0002", "raised", "yellow", 55, 1764813600000LL);
        login("watcher", cookie, sizeof(cookie));
        http h = request("GET", "/api/station?id=MY-RG-0001", cookie, NULL);
        assert_int_equal(h.status, 200);
        assert_non_null(strstr(h.body, "\"name\":\"石城镇黄峪口\""));
        assert_non_null(strstr(h.body, "\"id\":\"rainstorm\""));
        assert_non_null(strstr(h.body, "\"value\":52"));
        assert_null(strstr(h.body, "MY-RG-0002"));
        http_free(&h);
        h = request("GET", "/api/station?id=NOPE", cookie, NULL);
        assert_int_equal(h.status, 404);
        http_free(&h);
}

static void test_a_trusted_proxy_header_names_the_user(void **state) {
        NEED_REDIS();
        fh_console_stop(w.con);
        w.cfg.user_header = "X-Remote-User";
        char err[256];
        assert_int_equal(fh_console_start(&w.con, &w.cfg, w.e, err, sizeof(err)), 0);
        w.port = fh_console_port(w.con);
        http h = request("GET", "/api/me", "X-Remote-User: zhang.san\r\n", NULL);
        assert_non_null(strstr(h.body, "\"user\":\"zhang.san\",\"role\":\"operator\""));
        http_free(&h);
        h = request("GET", "/api/me", "X-Remote-User: watcher\r\n", NULL);
        assert_non_null(strstr(h.body, "\"role\":\"viewer\""));
        http_free(&h);
        h = request("GET", "/api/me", "", NULL);
        assert_int_equal(h.status, 401);
        http_free(&h);
}

static void test_form_values_are_decoded_and_bad_ones_refused(void **state) {
        char out[16];
        const char *b = "a=1&note=x+y%21&bad=%zz&ctl=%0a&long=0123456789abcdef";
        assert_true(fh_console_form_get(b, strlen(b), "note", out, sizeof(out)));
        assert_string_equal(out, "x y!");
        assert_true(fh_console_form_get(b, strlen(b), "a", out, sizeof(out)));
        assert_string_equal(out, "1");
        assert_false(fh_console_form_get(b, strlen(b), "bad", out, sizeof(out)));
        assert_false(fh_console_form_get(b, strlen(b), "ctl", out, sizeof(out)));
        assert_false(fh_console_form_get(b, strlen(b), "long", out, sizeof(out)));
        assert_false(fh_console_form_get(b, strlen(b), "missing", out, sizeof(out)));
}

static void test_the_console_section_is_read_and_checked(void **state) {
        fh_diags d = FH_DIAGS_NULL;
        fh_console_config c;
        char path[600], *rules = NULL, *stations = NULL;

        snprintf(path, sizeof(path), "%s/console.yaml", it.tmpdir);
        it_write_file(path, "rules: /r\nstations: /s.csv\nkafka:\n  brokers: b:9092\n  topics:\n    rain: r\n"
                            "redis:\n  port: 6390\nconsole:\n  listen: 0.0.0.0\n  port: 8443\n"
                            "  users_file: /etc/fenghuo/users\n  user_header: X-Remote-User\n"
                            "  anonymous_read: true\n  session_ttl: 8h\n  client_header: X-Real-IP\n  login_lock: 30s\n");
        assert_int_equal(fh_console_config_load(path, &c, &rules, &stations, &d), 0);
        assert_string_equal(c.listen, "0.0.0.0");
        assert_int_equal(c.port, 8443);
        assert_string_equal(c.users_file, "/etc/fenghuo/users");
        assert_string_equal(c.user_header, "X-Remote-User");
        assert_true(c.anonymous_read);
        assert_int_equal(c.session_ttl_ms, 8 * 3600 * 1000);
        assert_string_equal(c.client_header, "X-Real-IP");
        assert_int_equal(c.login_lock_ms, 30000);
        assert_int_equal(c.redis_port, 6390);
        assert_string_equal(rules, "/r");
        assert_null(c.redis_username);
        fh_console_config_free(&c);
        free(rules);
        free(stations);

        it_write_file(path, "rules: /r\nstations: /s.csv\nkafka:\n  brokers: b:9092\n  topics:\n    rain: r\n"
                            "console:\n  port: http\n  colour: red\n  ack_timeout: 15m\n  login_lock: 0s\n");
        assert_int_equal(fh_console_config_load(path, &c, &rules, &stations, &d), -EINVAL);
        /* The port, the unknown key, the lock, no way in, no topic to escalate on. */
        assert_int_equal(d.n_errors, 5);
        fh_diags_clear(&d);
}

/* Every message on the mock cluster's topic, from the beginning: their
 * keys and values, one line each. */
static size_t consume_all(const char *bootstraps, const char *topic, char *out, size_t n) {
        char err[256];
        rd_kafka_conf_t *conf = rd_kafka_conf_new();
        assert_int_equal(rd_kafka_conf_set(conf, "bootstrap.servers", bootstraps, err, sizeof(err)), RD_KAFKA_CONF_OK);
        assert_int_equal(rd_kafka_conf_set(conf, "group.id", "test-console", err, sizeof(err)), RD_KAFKA_CONF_OK);
        rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err));
        assert_non_null(rk);
        rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new(1);
        rd_kafka_topic_partition_list_add(parts, topic, 0)->offset = RD_KAFKA_OFFSET_BEGINNING;
        assert_int_equal(rd_kafka_assign(rk, parts), 0);
        rd_kafka_topic_partition_list_destroy(parts);
        size_t count = 0, len = 0;
        out[0] = '\0';
        double quiet_until = it_now() + 3;
        while (it_now() < quiet_until) {
                rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
                if (!m)
                        continue;
                if (!m->err) {
                        len += (size_t) snprintf(out + len, n - len, "%.*s %.*s\n", (int) m->key_len,
                                                 (const char *) m->key, (int) m->len, (const char *) m->payload);
                        count++;
                        quiet_until = it_now() + 1;
                }
                rd_kafka_message_destroy(m);
        }
        rd_kafka_consumer_close(rk);
        rd_kafka_destroy(rk);
        return count;
}

static void test_an_unacknowledged_red_alert_is_escalated_once_across_restarts(void **state) {
        NEED_REDIS();
        char err[512], cookie[256], got[16384];

        /* librdkafka's mock cluster as the broker. */
        rd_kafka_conf_t *conf = rd_kafka_conf_new();
        assert_int_equal(rd_kafka_conf_set(conf, "test.mock.num.brokers", "1", err, sizeof(err)), RD_KAFKA_CONF_OK);
        rd_kafka_t *mock = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
        assert_non_null(mock);
        rd_kafka_mock_cluster_t *mc = rd_kafka_handle_mock_cluster(mock);
        assert_int_equal(rd_kafka_mock_topic_create(mc, "fenghuo.alerts", 1, 1), 0);
        char *bootstraps = strdup(rd_kafka_mock_cluster_bootstraps(mc));

        fh_console_stop(w.con);
        w.cfg.ack_timeout_ms = 1000;
        w.cfg.brokers = bootstraps;
        w.cfg.alerts_topic = "fenghuo.alerts";
        assert_int_equal(fh_console_start(&w.con, &w.cfg, w.e, err, sizeof(err)), 0);
        w.port = fh_console_port(w.con);

        daemon_writes("rainstorm", "MY-RG-0005", "raised", "red", 120, 1764813600000LL);
        daemon_writes("rainstorm", "MY-RG-0006", "raised", "red", 130, 1764813600000LL);
        daemon_writes("rainstorm", "MY-RG-0007", "raised", "orange", 60, 1764813600000LL);
        login("op", cookie, sizeof(cookie));
        http h = request("POST", "/api/ack", cookie, "alert_id=rainstorm%3AMY-RG-0006%3A1764813600000");
        assert_int_equal(h.status, 200);
        http_free(&h);

        double until = it_now() + 10;
        while (fh_escalator_produced(fh_console_escalator(w.con)) < 1 && it_now() < until)
                it_nap_ms(50);
        assert_int_equal(fh_escalator_produced(fh_console_escalator(w.con)), 1);

        /* A restarted console finds the alert escalated already. */
        fh_console_stop(w.con);
        assert_int_equal(fh_console_start(&w.con, &w.cfg, w.e, err, sizeof(err)), 0);
        it_nap_ms(1500);
        assert_int_equal(fh_escalator_produced(fh_console_escalator(w.con)), 0);

        assert_int_equal(consume_all(bootstraps, "fenghuo.alerts", got, sizeof(got)), 1);
        assert_true(!strncmp(got, "MY-RG-0005 {\"alert_id\":\"rainstorm:MY-RG-0005:1764813600000\","
                                  "\"event\":\"unacknowledged\"", 80));
        assert_non_null(strstr(got, "\"ack_timeout_s\":1,\"alert\":{\"alert_id\""));
        fh_console_stop(w.con);
        w.con = NULL;
        rd_kafka_destroy(mock);
        free(bootstraps);
}

/* Escalation needs a running console (docs/operations.md): one that was
 * down while an alert turned red escalates it as soon as it is back, when
 * ack_timeout has passed since the alert turned red (the stream's time),
 * not ack_timeout after the console came back. */
static void test_a_console_back_from_down_escalates_what_turned_red_meanwhile(void **state) {
        NEED_REDIS();
        char err[512], got[16384];

        rd_kafka_conf_t *conf = rd_kafka_conf_new();
        assert_int_equal(rd_kafka_conf_set(conf, "test.mock.num.brokers", "1", err, sizeof(err)), RD_KAFKA_CONF_OK);
        rd_kafka_t *mock = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
        assert_non_null(mock);
        rd_kafka_mock_cluster_t *mc = rd_kafka_handle_mock_cluster(mock);
        assert_int_equal(rd_kafka_mock_topic_create(mc, "fenghuo.alerts", 1, 1), 0);
        char *bootstraps = strdup(rd_kafka_mock_cluster_bootstraps(mc));

        /* The console is down. */
        fh_console_stop(w.con);
        w.con = NULL;
        long long t0 = fh_console_now_ms();
        daemon_writes("rainstorm", "MY-RG-0008", "raised", "red", 120, 1764813600000LL);
        /* Acknowledged (by another console) meanwhile: not escalated. */
        daemon_writes("rainstorm", "MY-RG-0009", "raised", "red", 125, 1764813600000LL);
        freeReplyObject(rq("SET fenghuo:console:ack:rainstorm:MY-RG-0009:1764813600000 %s",
                           "{\"alert_id\":\"rainstorm:MY-RG-0009:1764813600000\",\"user\":\"op\",\"ts\":0,\"note\":\"\"}"));
        /* Orange, not red: not escalated. */
        daemon_writes("rainstorm", "MY-RG-0010", "raised", "orange", 60, 1764813600000LL);
        /* A busy stream since: the change to red is 2500 entries back. */
        redisContext *rc = rclient();
        for (int i = 0; i < 2500; i++)
                redisAppendCommand(rc, "XADD fenghuo:alerts:stream * alert %s",
                                   "{\"alert_id\":\"rainstorm:MY-RG-0020:1\",\"level\":\"blue\"}");
        for (int i = 0; i < 2500; i++) {
                redisReply *r;
                assert_int_equal(redisGetReply(rc, (void **) &r), REDIS_OK);
                freeReplyObject(r);
        }
        redisFree(rc);
        it_nap_ms(2500);

        w.cfg.ack_timeout_ms = 2000;
        w.cfg.brokers = bootstraps;
        w.cfg.alerts_topic = "fenghuo.alerts";
        char err2[512];
        assert_int_equal(fh_console_start(&w.con, &w.cfg, w.e, err2, sizeof(err2)), 0);
        w.port = fh_console_port(w.con);
        double t1 = it_now();
        while (fh_escalator_produced(fh_console_escalator(w.con)) < 1 && it_now() < t1 + 1.5)
                it_nap_ms(20);
        assert_int_equal(fh_escalator_produced(fh_console_escalator(w.con)), 1);
        /* The clock started when the daemon wrote the alert. */
        redisReply *rep = rq("GET fenghuo:console:red_since:rainstorm:MY-RG-0008:1764813600000");
        assert_int_equal(rep->type, REDIS_REPLY_STRING);
        assert_true(atoll(rep->str) >= t0 - 1000 && atoll(rep->str) <= t0 + 1500);
        freeReplyObject(rep);

        /* One turning red now waits its full ack_timeout. */
        daemon_writes("rainstorm", "MY-RG-0010", "escalated", "red", 101, 1764813600000LL);
        double t2 = it_now();
        it_nap_ms(1000);
        assert_int_equal(fh_escalator_produced(fh_console_escalator(w.con)), 1);
        while (fh_escalator_produced(fh_console_escalator(w.con)) < 2 && it_now() < t2 + 10)
                it_nap_ms(50);
        assert_int_equal(fh_escalator_produced(fh_console_escalator(w.con)), 2);
        assert_true(it_now() - t2 >= 1.9);

        assert_int_equal(consume_all(bootstraps, "fenghuo.alerts", got, sizeof(got)), 2);
        assert_true(!strncmp(got, "MY-RG-0008 {\"alert_id\":\"rainstorm:MY-RG-0008:1764813600000\","
                                  "\"event\":\"unacknowledged\"", 80));
        const char *u = strstr(got, "\"unacknowledged_s\":");
        assert_non_null(u);
        assert_true(atoi(u + 19) >= 2);
        assert_null(strstr(got, "MY-RG-0009"));
        assert_non_null(strstr(got, "\nMY-RG-0010 {\"alert_id\":\"rainstorm:MY-RG-0010:1764813600000\""));
        fh_console_stop(w.con);
        w.con = NULL;
        w.cfg.ack_timeout_ms = 0;
        w.cfg.brokers = NULL;
        w.cfg.alerts_topic = NULL;
        rd_kafka_destroy(mock);
        free(bootstraps);
}

static void test_the_console_logs_in_to_redis_as_an_acl_user(void **state) {
        NEED_REDIS();
        char err[256], cookie[256];

        freeReplyObject(rq("ACL SETUSER fhconsole on >pw-42 ~* &* +@all"));
        fh_console_stop(w.con);
        w.cfg.redis_username = "fhconsole";
        w.cfg.redis_password = "pw-42";
        assert_int_equal(fh_console_start(&w.con, &w.cfg, w.e, err, sizeof(err)), 0);
        w.port = fh_console_port(w.con);
        login("op", cookie, sizeof(cookie));
        redisReply *rep = rq("CLIENT LIST");
        assert_non_null(strstr(rep->str, "user=fhconsole"));
        freeReplyObject(rep);
        fh_console_stop(w.con);
        w.con = NULL;
        freeReplyObject(rq("ACL DELUSER fhconsole"));
}

static void test_the_login_guard_locks_backs_off_and_forgets(void **state) {
        fh_login_guard *g = fh_login_guard_new(60000);
        const char *what;
        int64_t t = 1000000000;

        for (int i = 0; i < 4; i++)
                assert_int_equal(fh_login_guard_fail(g, "op", "10.0.0.66", t, &what), 0);
        assert_int_equal(fh_login_guard_wait(g, "op", "10.0.0.66", false, t), 0);
        /* The fifth failure of a name from one address locks that pair. */
        assert_int_equal(fh_login_guard_fail(g, "op", "10.0.0.66", t, &what), 60000);
        assert_string_equal(what, "user+address");
        assert_int_equal(fh_login_guard_wait(g, "op", "10.0.0.66", false, t + 1000), 59000);
        assert_int_equal(fh_login_guard_wait(g, "op", "10.0.0.66", true, t + 1000), 59000);
        assert_int_equal(fh_login_guard_wait(g, "op", "10.0.0.1", false, t + 1000), 0);
        assert_int_equal(fh_login_guard_wait(g, "other", "10.0.0.66", false, t + 1000), 0);
        t += 60000;
        assert_int_equal(fh_login_guard_wait(g, "op", "10.0.0.66", false, t), 0);

        /* Five more from another address: that pair locks, and the name has
         * failed ten times, so it locks from every address it has not
         * logged in from before. */
        for (int i = 0; i < 4; i++)
                assert_int_equal(fh_login_guard_fail(g, "op", "10.0.0.67", t, &what), 0);
        assert_int_equal(fh_login_guard_fail(g, "op", "10.0.0.67", t, &what), 60000);
        assert_int_equal(fh_login_guard_wait(g, "op", "10.0.0.68", false, t), 60000);
        assert_int_equal(fh_login_guard_wait(g, "op", "10.0.0.1", true, t), 0);

        /* The same pair again: the lock doubles each time, up to 15 min. */
        int64_t want[] = { 120000, 240000, 480000, 900000, 900000 };
        for (size_t k = 0; k < 5; k++) {
                t += 900000;
                for (int i = 0; i < 4; i++)
                        fh_login_guard_fail(g, "op", "10.0.0.66", t, &what);
                assert_int_equal(fh_login_guard_fail(g, "op", "10.0.0.66", t, &what), want[k]);
                assert_string_equal(what, "user+address");
        }
        /* A right password there restarts the pair's count. */
        t += 900000;
        fh_login_guard_ok(g, "op", "10.0.0.66", t);
        for (int i = 0; i < 4; i++) {
                fh_login_guard_fail(g, "op", "10.0.0.66", t, &what);
                assert_int_equal(fh_login_guard_wait(g, "op", "10.0.0.66", true, t), 0);
        }
        fh_login_guard_fail(g, "op", "10.0.0.66", t, &what);
        assert_int_equal(fh_login_guard_wait(g, "op", "10.0.0.66", true, t), 60000);

        /* One address trying many names locks after twenty, for every name
         * not known there. */
        for (int i = 0; i < 19; i++) {
                char name[16];
                snprintf(name, sizeof(name), "u%d", i);
                assert_int_equal(fh_login_guard_fail(g, name, "10.0.0.99", t, &what), 0);
        }
        assert_int_equal(fh_login_guard_fail(g, "u19", "10.0.0.99", t, &what), 60000);
        assert_string_equal(what, "address");
        assert_int_equal(fh_login_guard_wait(g, "anyone", "10.0.0.99", false, t), 60000);
        assert_int_equal(fh_login_guard_wait(g, "anyone", "10.0.0.99", true, t), 0);

        /* An hour without failures: the back-off starts from one minute. */
        t += 60000 + 3600 * 1000;
        for (int i = 0; i < 4; i++)
                fh_login_guard_fail(g, "op", "10.0.0.66", t, &what);
        assert_int_equal(fh_login_guard_fail(g, "op", "10.0.0.66", t, &what), 60000);
        fh_login_guard_free(g);
}

static void *guess_in_parallel(void *arg) {
        *(int *) arg = try_login("ghost", "guess", "X-Real-IP: 10.0.0.70\r\n", NULL);
        return NULL;
}

static void test_failed_logins_are_throttled_without_locking_out_a_known_address(void **state) {
        NEED_REDIS();
        int retry;

        w.cfg.client_header = "X-Real-IP";
        w.cfg.login_lock_ms = 2000;
        restart_console();
        /* op has worked from 10.0.0.1 before. */
        assert_int_equal(try_login("op", RIGHT, "X-Real-IP: 10.0.0.1\r\n", NULL), 200);

        log_capture();
        for (int i = 0; i < 4; i++)
                assert_int_equal(try_login("op", "guess", "X-Real-IP: 10.0.0.66\r\n", NULL), 401);
        assert_int_equal(try_login("op", "guess", "X-Real-IP: 10.0.0.66\r\n", &retry), 429);
        assert_int_equal(retry, 2);
        /* Locked: not even the right password is tried. */
        assert_int_equal(try_login("op", RIGHT, "X-Real-IP: 10.0.0.66\r\n", &retry), 429);
        assert_true(retry >= 1 && retry <= 2);
        /* Five more from elsewhere: the name is locked for new addresses... */
        for (int i = 0; i < 4; i++)
                assert_int_equal(try_login("op", "guess", "X-Real-IP: 10.0.0.67\r\n", NULL), 401);
        assert_int_equal(try_login("op", "guess", "X-Real-IP: 10.0.0.67\r\n", NULL), 429);
        assert_int_equal(try_login("op", RIGHT, "X-Real-IP: 10.0.0.68\r\n", NULL), 429);
        /* ...but not where its owner has logged in before. */
        assert_int_equal(try_login("op", RIGHT, "X-Real-IP: 10.0.0.1\r\n", NULL), 200);
        /* Another user is not affected. */
        assert_int_equal(try_login("watcher", RIGHT, "X-Real-IP: 10.0.0.68\r\n", NULL), 200);
        char *text = log_captured();
        assert_non_null(strstr(text, "login failed user=op addr=10.0.0.66"));
        assert_non_null(strstr(text, "warning: login locked after repeated failures user=op addr=10.0.0.66 "
                                     "scope=user+address lock_s=2"));
        assert_non_null(strstr(text, "login locked after repeated failures user=op addr=10.0.0.67 scope=user"));
        free(text);

        /* Guesses sent at once are counted one by one: four wrong, the
         * fifth locks, the rest wait. */
        pthread_t th[12];
        int status[12], n401 = 0, n429 = 0;
        for (int i = 0; i < 12; i++)
                assert_int_equal(pthread_create(&th[i], NULL, guess_in_parallel, &status[i]), 0);
        for (int i = 0; i < 12; i++) {
                pthread_join(th[i], NULL);
                n401 += status[i] == 401;
                n429 += status[i] == 429;
        }
        assert_int_equal(n401, 4);
        assert_int_equal(n429, 8);

        /* The lock ends. */
        it_nap_ms(2100);
        assert_int_equal(try_login("op", RIGHT, "X-Real-IP: 10.0.0.66\r\n", NULL), 200);
        /* Without the header the peer's address counts. */
        for (int i = 0; i < 4; i++)
                assert_int_equal(try_login("watcher", "guess", "", NULL), 401);
        assert_int_equal(try_login("watcher", "guess", "", NULL), 429);
        assert_int_equal(try_login("watcher", RIGHT, "X-Real-IP: 10.0.0.68\r\n", NULL), 200);
        w.cfg.client_header = NULL;
        w.cfg.login_lock_ms = 0;
}

static void test_the_users_file_is_read_again_and_kept_when_broken(void **state) {
        NEED_REDIS();
        char path[600], temp[256], op[256];
        int retry;

        snprintf(path, sizeof(path), "%s/users-reload", it.tmpdir);
        write_users(path, "op:%s\ntemp:%s\n", w.hash, w.hash);
        w.cfg.users_file = path;
        restart_console();
        login("temp", temp, sizeof(temp));
        login("op", op, sizeof(op));
        http h = request("GET", "/api/me", temp, NULL);
        assert_int_equal(h.status, 200);
        http_free(&h);

        /* temp leaves, newbie comes, op becomes a viewer: the next login
         * sees the changed file. */
        log_capture();
        write_users(path, "op:%s:viewer\nnewbie:%s\n", w.hash, w.hash);
        assert_int_equal(try_login("newbie", RIGHT, "", &retry), 200);
        h = request("GET", "/api/me", temp, NULL);
        assert_int_equal(h.status, 401);
        http_free(&h);
        redisReply *rep = rq("KEYS fenghuo:console:session:*");
        assert_int_equal(rep->elements, 2);     /* op's and newbie's */
        freeReplyObject(rep);
        h = request("GET", "/api/me", op, NULL);
        assert_non_null(strstr(h.body, "\"role\":\"viewer\""));
        http_free(&h);
        h = request("POST", "/api/ack", op, "alert_id=x%3Ay%3A1");
        assert_int_equal(h.status, 403);
        http_free(&h);

        /* A broken file (and SIGHUP) keeps the users read before. */
        write_users(path, "newbie:%s\nthis line is wrong\n", w.hash);
        assert_int_equal(fh_console_reload_users(w.con), -EINVAL);
        assert_int_equal(try_login("op", RIGHT, "", &retry), 200);
        h = request("GET", "/api/me", op, NULL);
        assert_int_equal(h.status, 200);
        http_free(&h);
        /* So does a missing one. */
        assert_int_equal(unlink(path), 0);
        assert_int_equal(fh_console_reload_users(w.con), -ENOENT);
        assert_int_equal(try_login("newbie", RIGHT, "", &retry), 200);
        /* SIGHUP with a good file again. */
        write_users(path, "newbie:%s\n", w.hash);
        assert_int_equal(fh_console_reload_users(w.con), 0);
        h = request("GET", "/api/me", op, NULL);
        assert_int_equal(h.status, 401);
        http_free(&h);
        char *text = log_captured();
        assert_non_null(strstr(text, "notice: user removed, sessions ended user=temp"));
        assert_non_null(strstr(text, "users file read path="));
        assert_non_null(strstr(text, "users-reload:2: expected name:crypt-hash[:operator|viewer]; "
                                     "keeping the 2 users read before"));
        assert_non_null(strstr(text, "No such file or directory; keeping the 2 users read before"));
        free(text);
        w.cfg.users_file = w.users;
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_form_values_are_decoded_and_bad_ones_refused),
                cmocka_unit_test(test_the_console_section_is_read_and_checked),
                cmocka_unit_test(test_the_login_guard_locks_backs_off_and_forgets),
                cmocka_unit_test_setup_teardown(test_failed_logins_are_throttled_without_locking_out_a_known_address,
                                                setup, teardown),
                cmocka_unit_test_setup_teardown(test_the_users_file_is_read_again_and_kept_when_broken,
                                                setup, teardown),
                cmocka_unit_test_setup_teardown(test_pages_are_served_from_the_binary, setup, teardown),
                cmocka_unit_test_setup_teardown(test_login_needs_the_right_password_and_gives_a_session, setup, teardown),
                cmocka_unit_test_setup_teardown(test_an_alert_reaches_the_live_stream_within_a_second_and_the_active_list,
                                                setup, teardown),
                cmocka_unit_test_setup_teardown(test_an_acknowledgement_records_who_when_and_the_note, setup, teardown),
                cmocka_unit_test_setup_teardown(test_a_silenced_station_is_marked_and_its_sms_channel_stays_quiet,
                                                setup, teardown),
                cmocka_unit_test_setup_teardown(test_the_station_page_has_thresholds_and_the_alert_history, setup, teardown),
                cmocka_unit_test_setup_teardown(test_a_trusted_proxy_header_names_the_user, setup, teardown),
                cmocka_unit_test_setup_teardown(test_the_console_logs_in_to_redis_as_an_acl_user, setup, teardown),
                cmocka_unit_test_setup_teardown(test_an_unacknowledged_red_alert_is_escalated_once_across_restarts,
                                                setup, teardown),
                cmocka_unit_test_setup_teardown(test_a_console_back_from_down_escalates_what_turned_red_meanwhile,
                                                setup, teardown),
        };
        return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
