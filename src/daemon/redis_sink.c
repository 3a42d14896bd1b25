/* Redis alert sink: hiredis 0.14's async API on the daemon's libuv loop.
 *
 * Queue. Every alert (and every sync_active) is an item in one FIFO. Items
 * before `next_send` are in flight on the current connection; the rest wait.
 * Replies come back in order, so the head is always the item being answered;
 * it leaves the queue when its last reply arrives. When a connection dies,
 * `next_send` goes back to the head and everything is resent from there on
 * the next connection. Order is therefore strict, and delivery is
 * at-least-once: commands of an alert that Redis executed before the
 * connection broke, but whose replies we never read, run a second time (one
 * more PUBLISH, one more stream entry; the HSET/HDEL is idempotent).
 *
 * Error replies. A command answered with an error such as WRONGTYPE or an
 * unknown command fails the same way every time: retrying would wedge the
 * queue behind one alert forever. Such an alert counts as delivered (with
 * error): stats.errors counts the reply, last_error keeps its text. Errors
 * that say "this server cannot take writes right now" (LOADING, BUSY,
 * MISCONF, READONLY, OOM, NOAUTH, ...) are different: they drop the
 * connection and the alert is resent after the backoff.
 *
 * hiredis ownership rules followed here:
 *   - the context is freed by hiredis after onConnect(REDIS_ERR) and after
 *     onDisconnect; we only forget our pointer in those callbacks;
 *   - redisAsyncFree() is called either outside any hiredis callback (timers)
 *     or inside a reply callback, where hiredis defers the free until the
 *     callback has returned; never inside onConnect/onDisconnect, which 0.14
 *     runs without its in-callback guard;
 *   - pending reply callbacks run with a NULL reply while the context is
 *     being freed; they are ignored, the disconnect is handled once.
 *
 * hiredis 0.14 has no redisAsyncSetTimeout(): connect and command timeouts
 * are one uv_timer (the watchdog). It resolves host names with a blocking
 * getaddrinfo(), so names are resolved first with uv_getaddrinfo() and
 * hiredis is handed a numeric address. */
#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#include "fenghuo/buf.h"
#include "redis_sink.h"

/* Caps on what callers and the config file control. */
#define JSON_MAX        (1u << 20)
#define FIELD_MAX       512
#define LEVEL_MAX       16
#define KEY_MAX         512
#define PASSWORD_MAX    512
#define HOST_MAX        255
#define BACKOFF_MAX_MS  (24 * 3600 * 1000)

/* Items written to the connection before their replies come back. Bounds the
 * hiredis output buffer and callback list when a large backlog is resent. */
#define INFLIGHT_MAX    1024
/* Field/value pairs per HSET in sync_active, so no single command is huge. */
#define SYNC_CHUNK      256

enum item_kind { ITEM_ALERT, ITEM_SYNC };

typedef struct sync_entry {
        const char *field;
        size_t field_len;
        const char *json;
        size_t json_len;
} sync_entry;

typedef struct item {
        struct item *next;
        void *token;
        enum item_kind kind;
        bool cleared;
        bool deferred;         /* the token has been told DEFERRED */
        bool delivered;        /* the token has been told DELIVERED */
        unsigned ncmds;        /* replies that complete the item */
        unsigned nreplied;     /* on the current connection */
        /* ITEM_ALERT: the shared bytes (one reference), passed to hiredis
         * as they are; the channel and seen key are made when sent. */
        fh_payload *p;
        bool once;             /* at most once per event id (p->dedupe) */
        /* ITEM_SYNC */
        sync_entry *entries;   /* one allocation with the strings after the array */
        size_t n;
} item;

/* Alert items kept for reuse: a steady stream of alerts allocates none. */
#define FREE_ITEMS_MAX  4096

enum state {
        ST_DOWN,               /* no connection; reconnect timer running or shutting down */
        ST_RESOLVING,
        ST_CONNECTING,
        ST_HANDSHAKE,          /* AUTH / SELECT sent */
        ST_READY,
        ST_DROPPING,           /* redisAsyncFree() requested, waiting for hiredis */
};

/* Event hooks for hiredis on a uv_poll_t. Not hiredis's adapters/libuv.h:
 * libuv reports POLLERR as status UV_EBADF and stops the handle, and that
 * adapter (0.14.1) returns without telling hiredis, so a reset connection or
 * an asynchronously refused connect hangs until some timeout. Here hiredis
 * gets the events it waits for and finds the error itself with read() or
 * getsockopt(). The adapter also re-arms the poll (an epoll_ctl pair) on every
 * queued command; this one only when the wanted events change. */
typedef struct conn_poll {
        uv_poll_t handle;
        redisAsyncContext *ac; /* NULL once hiredis has cleaned up */
        int events;
} conn_poll;

struct fh_redis {
        uv_loop_t *loop;
        fh_redis_ack_fn ack;
        void *userdata;
        fh_redis_state_fn state_fn;
        void *state_data;
        bool announced_up;

        /* config, owned copies */
        char *host;
        int port;
        char *username;
        char *password;
        int db;
        char *channel;
        size_t channel_len;
        char *stream;
        size_t stream_len;
        char *active_hash;
        size_t hash_len;
        char maxlen[24];
        size_t maxlen_len;
        char seen_ttl[24];
        size_t seen_ttl_len;
        /* SHA1 of once_script as this connection's server loaded it (SCRIPT
         * LOAD at connect); "" sends the script itself (EVAL). */
        char once_sha[41];
        size_t max_backlog;
        uint64_t backoff_min_ms, backoff_max_ms, timeout_ms;

        enum state state;
        redisAsyncContext *ac;
        unsigned handshake_pending;
        bool ever_ready;
        unsigned attempt;      /* connects since the last success, for the backoff */
        bool error_drop;       /* the last connection was dropped for an error reply */
        uint64_t rng;
        uint64_t conn_started; /* uv_now() */
        uint64_t last_progress;

        item *head, *tail, *next_send;
        item *free_items;
        size_t n_free_items;
        size_t backlog;
        size_t inflight;

        uv_getaddrinfo_t gai;
        bool resolving;
        uv_timer_t reconnect_timer;
        uv_timer_t watchdog;
        uv_timer_t close_timer;
        unsigned open_handles;

        bool closing;          /* fh_redis_close() called: no new alerts */
        bool shutting;         /* deadline passed or backlog empty: tearing down */
        void (*done)(void *userdata, size_t undelivered);
        void *done_userdata;

        fh_redis_stats stats;
        char label[HOST_MAX + 16];     /* "host:port" or the socket path, for messages */
        char last_error[512];
};

static void start_connect(fh_redis *r);
static void pump(fh_redis *r);
static void maybe_finish(fh_redis *r);
static void on_close_timer(uv_timer_t *t);

__attribute__((format(printf, 2, 3)))
static void set_error(fh_redis *r, const char *fmt, ...) {
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(r->last_error, sizeof(r->last_error), fmt, ap);
        va_end(ap);
}

/* ---- event hooks ---------------------------------------------------------- */

static void conn_poll_cb(uv_poll_t *handle, int status, int events) {
        conn_poll *p = handle->data;

        if (status < 0)
                events = p->events;
        if (p->ac && (events & UV_READABLE))
                redisAsyncHandleRead(p->ac);
        /* The read may have freed the context; cleanup cleared p->ac then,
         * and p itself lives until its close callback. */
        if (p->ac && (events & UV_WRITABLE))
                redisAsyncHandleWrite(p->ac);
}

static void conn_poll_set(conn_poll *p, int events) {
        bool active = uv_is_active((uv_handle_t *)&p->handle);

        /* libuv stops the handle after an error, so "same events" alone does
         * not mean it is still polling. */
        if (events == p->events && active == (events != 0))
                return;
        p->events = events;
        if (events)
                (void)uv_poll_start(&p->handle, events, conn_poll_cb);
        else
                (void)uv_poll_stop(&p->handle);
}

static void conn_add_read(void *data) {
        conn_poll *p = data;
        conn_poll_set(p, p->events | UV_READABLE);
}

static void conn_del_read(void *data) {
        conn_poll *p = data;
        conn_poll_set(p, p->events & ~UV_READABLE);
}

static void conn_add_write(void *data) {
        conn_poll *p = data;
        conn_poll_set(p, p->events | UV_WRITABLE);
}

static void conn_del_write(void *data) {
        conn_poll *p = data;
        conn_poll_set(p, p->events & ~UV_WRITABLE);
}

static void conn_poll_closed(uv_handle_t *handle) {
        free(handle->data);
}

static void conn_cleanup(void *data) {
        conn_poll *p = data;

        p->ac = NULL;
        uv_close((uv_handle_t *)&p->handle, conn_poll_closed);
}

static int conn_attach(redisAsyncContext *ac, uv_loop_t *loop) {
        conn_poll *p = fh_calloc(1, sizeof(*p));
        int rc;

        rc = uv_poll_init(loop, &p->handle, ac->c.fd);
        if (rc < 0) {
                free(p);
                return rc;
        }
        p->handle.data = p;
        p->ac = ac;
        ac->ev.data = p;
        ac->ev.addRead = conn_add_read;
        ac->ev.delRead = conn_del_read;
        ac->ev.addWrite = conn_add_write;
        ac->ev.delWrite = conn_del_write;
        ac->ev.cleanup = conn_cleanup;
        return 0;
}

/* ---- config --------------------------------------------------------------- */

void fh_redis_config_defaults(fh_redis_config *c) {
        *c = (fh_redis_config){
                .host = (char *)"127.0.0.1",
                .port = 6379,
                .password = NULL,
                .db = 0,
                .channel = (char *)"fenghuo:alerts",
                .stream = (char *)"fenghuo:alerts:stream",
                .stream_maxlen = 1000000,
                .active_hash = (char *)"fenghuo:alerts:active",
                .max_backlog = 100000,
                .backoff_min_ms = 100,
                .backoff_max_ms = 5000,
                .timeout_ms = 2000,
                .seen_ttl_s = 604800,
        };
}

static bool str_ok(const char *s, size_t max) {
        return s && s[0] && strnlen(s, max + 1) <= max;
}

static int config_check(const fh_redis_config *c) {
        if (!c->host || !c->host[0])
                return -EINVAL;
        if (c->host[0] == '/') {
                if (strnlen(c->host, sizeof(((struct sockaddr_un *)0)->sun_path)) >=
                    sizeof(((struct sockaddr_un *)0)->sun_path))
                        return -EINVAL;
        } else {
                if (!str_ok(c->host, HOST_MAX) || c->port < 1 || c->port > 65535)
                        return -EINVAL;
        }
        if (c->password && strnlen(c->password, PASSWORD_MAX + 1) > PASSWORD_MAX)
                return -EINVAL;
        /* An ACL user name goes with a password (AUTH user pass). */
        if (c->username && (!c->password || !str_ok(c->username, KEY_MAX)))
                return -EINVAL;
        if (c->db < 0)
                return -EINVAL;
        if (!str_ok(c->channel, KEY_MAX) || !str_ok(c->stream, KEY_MAX) ||
            !str_ok(c->active_hash, KEY_MAX))
                return -EINVAL;
        if (c->stream_maxlen < 1 || c->max_backlog < 1)
                return -EINVAL;
        if (c->backoff_min_ms < 0 || c->backoff_max_ms < c->backoff_min_ms ||
            c->backoff_max_ms > BACKOFF_MAX_MS)
                return -EINVAL;
        if (c->timeout_ms < 1 || c->timeout_ms > BACKOFF_MAX_MS)
                return -EINVAL;
        return 0;
}

/* ---- queue ---------------------------------------------------------------- */

static item *item_new(fh_redis *r) {
        item *it = r->free_items;

        if (!it)
                return fh_malloc(sizeof(*it));
        r->free_items = it->next;
        r->n_free_items--;
        return it;
}

static void item_free(fh_redis *r, item *it) {
        if (!it)
                return;
        free(it->entries);
        fh_payload_unref(it->p);
        if (it->kind == ITEM_ALERT && r->n_free_items < FREE_ITEMS_MAX) {
                it->next = r->free_items;
                r->free_items = it;
                r->n_free_items++;
                return;
        }
        free(it);
}

static void enqueue(fh_redis *r, item *it) {
        if (r->tail)
                r->tail->next = it;
        else
                r->head = it;
        r->tail = it;
        if (!r->next_send)
                r->next_send = it;
        r->backlog++;
        if (r->backlog > r->stats.backlog_max)
                r->stats.backlog_max = r->backlog;
}

static void report(fh_redis *r, item *it, int status) {
        if (!it->token || it->delivered)
                return;
        if (status == FH_REDIS_DEFERRED) {
                if (it->deferred)
                        return;
                it->deferred = true;
        } else
                it->delivered = true;
        if (r->ack)
                r->ack(r->userdata, it->token, status);
}

/* ---- connection ----------------------------------------------------------- */

static uint64_t next_rand(fh_redis *r) {
        /* xorshift64*: jitter only, needs no quality. */
        r->rng ^= r->rng >> 12;
        r->rng ^= r->rng << 25;
        r->rng ^= r->rng >> 27;
        return r->rng * UINT64_C(2685821657736338717);
}

static void on_reconnect_timer(uv_timer_t *t) {
        start_connect(t->data);
}

static void schedule_reconnect(fh_redis *r) {
        uint64_t step = r->backoff_min_ms, delay;

        for (unsigned i = 0; i < r->attempt && step < r->backoff_max_ms; i++)
                step = step ? step * 2 : 1;
        if (step > r->backoff_max_ms)
                step = r->backoff_max_ms;
        if (r->attempt < 64)
                r->attempt++;
        /* Equal jitter: daemons restarted together spread out, and no wait
         * drops below half the step. */
        delay = step / 2 + next_rand(r) % (step - step / 2 + 1);
        r->state = ST_DOWN;
        uv_timer_start(&r->reconnect_timer, on_reconnect_timer, delay, 0);
}

/* The context is gone (or about to be, inside hiredis): everything in flight
 * goes back to the queue. Does not touch the context. */
static void conn_gone(fh_redis *r) {
        size_t n_back = r->inflight;
        item *it;

        if (!r->ac)
                return;
        r->ac = NULL;
        r->inflight = 0;
        for (it = r->head; it != r->next_send; it = it->next)
                it->nreplied = 0;
        r->next_send = r->head;
        uv_timer_stop(&r->watchdog);
        if (r->shutting)
                r->state = ST_DOWN;
        else
                schedule_reconnect(r);

        /* Reports last: they run user code, which may queue more alerts
         * (appended after these, so counting keeps to the ones sent). */
        it = r->head;
        for (size_t i = 0; i < n_back && it; i++, it = it->next)
                report(r, it, FH_REDIS_DEFERRED);
        if (r->state_fn && r->announced_up) {
                r->announced_up = false;
                r->state_fn(r->state_data, false);
        }
}

/* Outside hiredis callbacks only (timers). */
static void drop_connection(fh_redis *r) {
        redisAsyncContext *ac = r->ac;

        if (!ac)
                return;
        r->state = ST_DROPPING;
        redisAsyncFree(ac);
        /* onDisconnect runs only for connections that got as far as
         * connected; for the others the loss is ours to handle. */
        conn_gone(r);
}

/* Inside a reply callback: hiredis frees the context once the callback
 * returns, then calls onDisconnect. */
static void drop_from_reply(fh_redis *r) {
        if (r->state == ST_DROPPING)
                return;
        r->state = ST_DROPPING;
        redisAsyncFree(r->ac);
}

static void on_watchdog(uv_timer_t *t) {
        fh_redis *r = t->data;
        uint64_t now = uv_now(r->loop), deadline;

        switch (r->state) {
        case ST_DROPPING:
                drop_connection(r);
                return;
        case ST_CONNECTING:
        case ST_HANDSHAKE:
                deadline = r->conn_started + r->timeout_ms;
                break;
        case ST_READY:
                if (r->inflight == 0)
                        return;
                deadline = r->last_progress + r->timeout_ms;
                break;
        default:
                return;
        }
        if (now < deadline) {
                uv_timer_start(&r->watchdog, on_watchdog, deadline - now, 0);
                return;
        }
        set_error(r, "redis %s: no answer within %" PRIu64 " ms", r->label, r->timeout_ms);
        drop_connection(r);
}

static void ready(fh_redis *r) {
        r->state = ST_READY;
        /* After an error reply (LOADING, a wrong password) a connect proves
         * nothing: keep backing off until an alert gets through. */
        if (!r->error_drop)
                r->attempt = 0;
        r->error_drop = false;
        if (r->ever_ready)
                r->stats.reconnects++;
        r->ever_ready = true;
        uv_timer_stop(&r->watchdog);
        pump(r);
        if (r->state_fn && !r->announced_up) {
                r->announced_up = true;
                r->state_fn(r->state_data, true);
        }
}

static void on_handshake_reply(redisAsyncContext *ac, void *reply, void *privdata) {
        fh_redis *r = ac->data;
        redisReply *rep = reply;

        if (!rep || r->state != ST_HANDSHAKE)
                return;
        if (rep->type == REDIS_REPLY_ERROR) {
                r->stats.errors++;
                r->error_drop = true;
                set_error(r, "redis %s: %s refused: %s", r->label,
                          (const char *)privdata, rep->str);
                drop_from_reply(r);
                return;
        }
        if (--r->handshake_pending == 0)
                ready(r);
}

/* One event, once: the SET NX of its id and everything it does run as one
 * script, so a resend after a broken connection (or a restarted daemon
 * re-sending its outbox) changes nothing the second time.
 * A silence the console set ("<channel>:silence:sensor:<sensor>" or
 * "...:rule:<rule>", ARGV[5] being "<rule>:<sensor>") keeps the event off
 * the per-level channels the SMS gateways follow. The all-events channel
 * and the stream get the event marked `"silenced":true`, with who set the
 * silence and its end when the key holds the console's JSON (a key set by
 * hand may hold anything: it is decoded under pcall); the stream entry also
 * has a `silenced` field for readers that skip without parsing. The active
 * hash keeps the event unmarked: a silence can end or start while the alert
 * stays, and the console reads the silence keys for it.
 * The silence keys are not in KEYS: fenghuo's Redis is one node. */
static const char once_script[] =
        "if redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[7]) then "
        "local r, s = string.match(ARGV[5], '^([^:]*):(.*)$') "
        "local sil = r ~= nil and (redis.call('GET', ARGV[2] .. ':silence:sensor:' .. s) "
        "or redis.call('GET', ARGV[2] .. ':silence:rule:' .. r)) "
        "local m = ARGV[1] "
        "if sil and #m > 2 and string.sub(m, -1) == '}' then "
        "local x = ',\"silenced\":true' "
        "local ok, d = pcall(cjson.decode, sil) "
        "if ok and type(d) == 'table' then "
        "if type(d.user) == 'string' then x = x .. ',\"silenced_by\":' .. cjson.encode(d.user) end "
        "if type(d['until']) == 'number' and d['until'] >= 0 and d['until'] < 1e15 then "
        "x = x .. ',\"silenced_until\":' .. string.format('%d', math.floor(d['until'])) end end "
        "m = string.sub(m, 1, -2) .. x .. '}' end "
        "redis.call('PUBLISH', ARGV[2], m) "
        "if sil then "
        "redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[4], '*', 'alert', m, 'silenced', '1') "
        "else "
        "redis.call('PUBLISH', ARGV[3], m) "
        "redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[4], '*', 'alert', m) end "
        "if ARGV[6] == '1' then redis.call('HDEL', KEYS[3], ARGV[5]) "
        "else redis.call('HSET', KEYS[3], ARGV[5], ARGV[1]) end "
        "return 1 end return 0";

/* The script of fh_redis_send_once once per connection, so that each alert
 * sends its 40-character SHA1 (EVALSHA) instead of the whole text, which
 * the server would also hash again for every EVAL. A server that refuses
 * SCRIPT LOAD still gets EVAL. */
static void on_script_loaded(redisAsyncContext *ac, void *reply, void *privdata) {
        fh_redis *r = ac->data;
        redisReply *rep = reply;

        if (!rep || r->state != ST_HANDSHAKE)
                return;
        if (rep->type == REDIS_REPLY_STRING && rep->len == 40)
                memcpy(r->once_sha, rep->str, 41);
        if (--r->handshake_pending == 0)
                ready(r);
}

static void on_connect(const redisAsyncContext *cac, int status) {
        fh_redis *r = cac->data;
        redisAsyncContext *ac = r->ac;
        char db[16];

        if (status != REDIS_OK) {
                /* hiredis frees the context when this returns. */
                set_error(r, "redis %s: connect failed: %s", r->label,
                          cac->errstr ? cac->errstr : "unknown error");
                conn_gone(r);
                return;
        }
        r->state = ST_HANDSHAKE;
        r->handshake_pending = 0;
        if (r->password) {
                /* Redis 6 ACLs: AUTH user pass; without a user, the
                 * "default" user (requirepass). */
                const char *argv[] = { "AUTH", r->username ? r->username : r->password, r->password };
                const size_t lens[] = { 4, strlen(argv[1]), strlen(r->password) };
                if (redisAsyncCommandArgv(ac, on_handshake_reply, (void *)"AUTH", r->username ? 3 : 2, argv, lens) ==
                    REDIS_OK)
                        r->handshake_pending++;
        }
        if (r->db) {
                int n = snprintf(db, sizeof(db), "%d", r->db);
                const char *argv[] = { "SELECT", db };
                const size_t lens[] = { 6, (size_t)n };
                if (redisAsyncCommandArgv(ac, on_handshake_reply, (void *)"SELECT", 2, argv, lens) == REDIS_OK)
                        r->handshake_pending++;
        }
        r->once_sha[0] = '\0';
        {
                const char *argv[] = { "SCRIPT", "LOAD", once_script };
                const size_t lens[] = { 6, 4, sizeof(once_script) - 1 };
                if (redisAsyncCommandArgv(ac, on_script_loaded, NULL, 3, argv, lens) == REDIS_OK)
                        r->handshake_pending++;
        }
        if (r->handshake_pending == 0)
                ready(r);
}

static void on_disconnect(const redisAsyncContext *cac, int status) {
        fh_redis *r = cac->data;

        if (status != REDIS_OK && cac->errstr)
                set_error(r, "redis %s: connection lost: %s", r->label, cac->errstr);
        conn_gone(r);
}

static void do_connect(fh_redis *r, const char *addr) {
        redisAsyncContext *ac;
        int rc;

        ac = r->host[0] == '/' ? redisAsyncConnectUnix(r->host) : redisAsyncConnect(addr, r->port);
        if (!ac)
                fh_oom();
        if (ac->err) {
                set_error(r, "redis %s: connect failed: %s", r->label, ac->errstr);
                redisAsyncFree(ac);
                schedule_reconnect(r);
                return;
        }
        rc = conn_attach(ac, r->loop);
        if (rc < 0) {
                set_error(r, "redis %s: cannot poll socket: %s", r->label, uv_strerror(rc));
                redisAsyncFree(ac);
                schedule_reconnect(r);
                return;
        }
        ac->data = r;
        r->ac = ac;
        r->state = ST_CONNECTING;
        r->conn_started = uv_now(r->loop);
        redisAsyncSetDisconnectCallback(ac, on_disconnect);
        /* After conn_attach: this arms the write event that reports the
         * outcome of the connect. */
        redisAsyncSetConnectCallback(ac, on_connect);
        uv_timer_start(&r->watchdog, on_watchdog, r->timeout_ms, 0);
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res) {
        fh_redis *r = req->data;
        char addr[INET6_ADDRSTRLEN] = "";
        const struct addrinfo *pick = NULL;

        r->resolving = false;
        if (r->shutting) {
                uv_freeaddrinfo(res);
                maybe_finish(r);
                return;
        }
        if (status < 0 || !res) {
                set_error(r, "redis %s: cannot resolve: %s", r->host, uv_strerror(status < 0 ? status : UV_EAI_NONAME));
                uv_freeaddrinfo(res);
                schedule_reconnect(r);
                return;
        }
        /* IPv4 first, as hiredis does itself: "localhost" often lists ::1
         * first while redis listens on 127.0.0.1 only. */
        for (const struct addrinfo *ai = res; ai; ai = ai->ai_next) {
                if (ai->ai_family == AF_INET) {
                        pick = ai;
                        break;
                }
                if (ai->ai_family == AF_INET6 && !pick)
                        pick = ai;
        }
        if (pick && pick->ai_family == AF_INET)
                uv_ip4_name((const struct sockaddr_in *)pick->ai_addr, addr, sizeof(addr));
        else if (pick)
                uv_ip6_name((const struct sockaddr_in6 *)pick->ai_addr, addr, sizeof(addr));
        uv_freeaddrinfo(res);
        if (!addr[0]) {
                set_error(r, "redis %s: no IPv4 or IPv6 address", r->host);
                schedule_reconnect(r);
                return;
        }
        do_connect(r, addr);
}

static void start_connect(fh_redis *r) {
        struct in6_addr a6;
        struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM };
        int rc;

        if (r->shutting || r->ac || r->resolving)
                return;
        if (r->host[0] == '/' || inet_pton(AF_INET, r->host, &a6) == 1 ||
            inet_pton(AF_INET6, r->host, &a6) == 1) {
                do_connect(r, r->host);
                return;
        }
        rc = uv_getaddrinfo(r->loop, &r->gai, on_resolved, r->host, NULL, &hints);
        if (rc < 0) {
                set_error(r, "redis %s: cannot resolve: %s", r->host, uv_strerror(rc));
                schedule_reconnect(r);
                return;
        }
        r->resolving = true;
        r->state = ST_RESOLVING;
}

/* ---- replies -------------------------------------------------------------- */

/* Errors after which the same command can succeed once the server recovers
 * or the operator fixes it: retry on a new connection instead of giving up
 * on the alert. */
static bool error_is_transient(const char *s) {
        static const char *const prefixes[] = {
                "LOADING", "BUSY", "MISCONF", "READONLY", "OOM", "NOAUTH", "NOPERM",
                /* SCRIPT FLUSH on the server: the new connection loads it again. */
                "NOSCRIPT",
                "MASTERDOWN", "TRYAGAIN", "CLUSTERDOWN", "NOREPLICAS",
        };

        if (!s)
                return false;
        /* Sent right after accept() when maxclients is reached, so it
         * answers our first pipelined command. */
        if (strncmp(s, "ERR max number of clients", 25) == 0)
                return true;
        for (size_t i = 0; i < FH_ARRAY_SIZE(prefixes); i++) {
                size_t n = strlen(prefixes[i]);
                if (strncmp(s, prefixes[i], n) == 0 && (s[n] == ' ' || s[n] == '\0'))
                        return true;
        }
        return false;
}

/* 1: permanent error(s), counted; 0: fine; -1: transient error. */
static int reply_check(fh_redis *r, const redisReply *rep) {
        int rc = 0;

        if (rep->type == REDIS_REPLY_ERROR) {
                r->stats.errors++;
                set_error(r, "redis %s: %s", r->label, rep->str);
                return error_is_transient(rep->str) ? -1 : 1;
        }
        /* EXEC answers with the replies of the queued commands. */
        if (rep->type == REDIS_REPLY_ARRAY) {
                for (size_t i = 0; i < rep->elements; i++) {
                        if (rep->element[i] && rep->element[i]->type == REDIS_REPLY_ERROR) {
                                int e = reply_check(r, rep->element[i]);
                                if (e < 0 || rc == 0)
                                        rc = e;
                        }
                }
        }
        return rc;
}

static void on_item_reply(redisAsyncContext *ac, void *reply, void *privdata) {
        fh_redis *r = ac->data;
        item *it = privdata;

        /* NULL: the context is being freed; conn_gone() requeues. */
        if (!reply || r->state != ST_READY)
                return;
        r->last_progress = uv_now(r->loop);
        if (reply_check(r, reply) < 0) {
                r->error_drop = true;
                drop_from_reply(r);
                return;
        }
        if (++it->nreplied < it->ncmds)
                return;

        /* Replies come in order: a complete item is the head. */
        assert(it == r->head);
        r->head = it->next;
        if (r->tail == it)
                r->tail = NULL;
        r->backlog--;
        r->inflight--;
        r->stats.delivered++;
        r->attempt = 0;
        report(r, it, FH_REDIS_DELIVERED);
        item_free(r, it);

        if (r->closing && r->backlog == 0)
                uv_timer_start(&r->close_timer, on_close_timer, 0, 0);
        else
                pump(r);
}

/* ---- sending -------------------------------------------------------------- */

/* Queues one command of an item; a failure sticks, so a sequence of calls
 * needs one check at the end. */
static void cmd(fh_redis *r, item *it, int *rc, int argc, const char **argv, const size_t *lens) {
        if (*rc == 0 && redisAsyncCommandArgv(r->ac, on_item_reply, it, argc, argv, lens) != REDIS_OK)
                *rc = -EIO;
}

/* hiredis formats each command into its output buffer, copying every
 * argument: these two strings need to live only until it returns. */
static size_t make_chan(const fh_redis *r, const fh_payload *p, char *buf) {
        size_t n = strlen(p->level);

        memcpy(buf, r->channel, r->channel_len);
        buf[r->channel_len] = ':';
        memcpy(buf + r->channel_len + 1, p->level, n);
        return r->channel_len + 1 + n;
}

static int send_alert_once(fh_redis *r, item *it, const char *chan, size_t chan_len) {
        const fh_payload *p = it->p;
        char seen[KEY_MAX + sizeof(":seen:") + FIELD_MAX];
        size_t seen_len = (size_t)snprintf(seen, sizeof(seen), "%s:seen:%s", r->stream, p->dedupe);
        bool sha = r->once_sha[0] != '\0';
        const char *argv[] = { sha ? "EVALSHA" : "EVAL", sha ? r->once_sha : once_script, "3", seen, r->stream,
                               r->active_hash, p->value, r->channel, chan, r->maxlen, p->field,
                               p->cleared ? "1" : "0", r->seen_ttl };
        const size_t lens[] = { sha ? 7 : 4, sha ? 40 : sizeof(once_script) - 1, 1, seen_len, r->stream_len,
                                r->hash_len, p->value_len, r->channel_len, chan_len, r->maxlen_len, p->field_len,
                                1, r->seen_ttl_len };
        int rc = 0;

        cmd(r, it, &rc, 13, argv, lens);
        return rc;
}

static int send_alert(fh_redis *r, item *it) {
        const fh_payload *p = it->p;
        char chan[KEY_MAX + 1 + LEVEL_MAX + 1];
        size_t chan_len = make_chan(r, p, chan);

        if (it->once)
                return send_alert_once(r, it, chan, chan_len);
        const char *pub[] = { "PUBLISH", r->channel, p->value };
        const size_t pub_len[] = { 7, r->channel_len, p->value_len };
        const char *pub_lvl[] = { "PUBLISH", chan, p->value };
        const size_t pub_lvl_len[] = { 7, chan_len, p->value_len };
        const char *xadd[] = { "XADD", r->stream, "MAXLEN", "~", r->maxlen, "*", "alert", p->value };
        const size_t xadd_len[] = { 4, r->stream_len, 6, 1, r->maxlen_len, 1, 5, p->value_len };
        const char *hset[] = { "HSET", r->active_hash, p->field, p->value };
        const size_t hset_len[] = { 4, r->hash_len, p->field_len, p->value_len };
        const char *hdel[] = { "HDEL", r->active_hash, p->field };
        const size_t hdel_len[] = { 4, r->hash_len, p->field_len };
        int rc = 0;

        cmd(r, it, &rc, 3, pub, pub_len);
        cmd(r, it, &rc, 3, pub_lvl, pub_lvl_len);
        cmd(r, it, &rc, 8, xadd, xadd_len);
        if (p->cleared)
                cmd(r, it, &rc, 3, hdel, hdel_len);
        else
                cmd(r, it, &rc, 4, hset, hset_len);
        return rc;
}

static int send_sync(fh_redis *r, item *it) {
        const char *argv[2 + 2 * SYNC_CHUNK] = { "HSET", r->active_hash };
        size_t lens[2 + 2 * SYNC_CHUNK] = { 4, r->hash_len };
        const char *multi[] = { "MULTI" }, *exec[] = { "EXEC" };
        const size_t multi_len[] = { 5 }, exec_len[] = { 4 };
        const char *del[] = { "DEL", r->active_hash };
        const size_t del_len[] = { 3, r->hash_len };
        int rc = 0;

        /* MULTI/EXEC: readers never see the hash empty or half filled. */
        cmd(r, it, &rc, 1, multi, multi_len);
        cmd(r, it, &rc, 2, del, del_len);
        for (size_t i = 0; i < it->n; i += SYNC_CHUNK) {
                size_t m = FH_MIN(SYNC_CHUNK, it->n - i);
                for (size_t j = 0; j < m; j++) {
                        const sync_entry *e = &it->entries[i + j];
                        argv[2 + 2 * j] = e->field;
                        lens[2 + 2 * j] = e->field_len;
                        argv[3 + 2 * j] = e->json;
                        lens[3 + 2 * j] = e->json_len;
                }
                cmd(r, it, &rc, (int)(2 + 2 * m), argv, lens);
        }
        cmd(r, it, &rc, 1, exec, exec_len);
        return rc;
}

static void pump(fh_redis *r) {
        while (r->state == ST_READY && r->next_send && r->inflight < INFLIGHT_MAX) {
                item *it = r->next_send;
                int rc;

                it->nreplied = 0;
                rc = it->kind == ITEM_ALERT ? send_alert(r, it) : send_sync(r, it);
                r->next_send = it->next;
                if (r->inflight++ == 0) {
                        r->last_progress = uv_now(r->loop);
                        if (!uv_is_active((uv_handle_t *)&r->watchdog))
                                uv_timer_start(&r->watchdog, on_watchdog, r->timeout_ms, 0);
                }
                r->stats.sent++;
                if (rc < 0) {
                        /* hiredis refused a command (out of memory): the
                         * item can never complete on this connection. The
                         * watchdog replaces it from the loop, since pump()
                         * may run inside fh_redis_send(), where no report
                         * may be made. */
                        set_error(r, "redis %s: hiredis refused a command", r->label);
                        r->state = ST_DROPPING;
                        uv_timer_start(&r->watchdog, on_watchdog, 0, 0);
                        return;
                }
        }
}

/* ---- public --------------------------------------------------------------- */

int fh_redis_new(fh_redis **ret, uv_loop_t *loop, const fh_redis_config *cfg,
                 fh_redis_ack_fn ack, void *userdata) {
        fh_redis *r;
        int rc;

        if (!ret || !loop || !cfg)
                return -EINVAL;
        rc = config_check(cfg);
        if (rc < 0)
                return rc;

        r = fh_calloc(1, sizeof(*r));
        r->loop = loop;
        r->ack = ack;
        r->userdata = userdata;
        r->host = fh_strdup(cfg->host);
        r->port = cfg->port;
        if (r->host[0] == '/')
                snprintf(r->label, sizeof(r->label), "%s", r->host);
        else
                snprintf(r->label, sizeof(r->label), "%s:%d", r->host, r->port);
        r->username = cfg->username ? fh_strdup(cfg->username) : NULL;
        r->password = cfg->password ? fh_strdup(cfg->password) : NULL;
        r->db = cfg->db;
        r->channel = fh_strdup(cfg->channel);
        r->channel_len = strlen(r->channel);
        r->stream = fh_strdup(cfg->stream);
        r->stream_len = strlen(r->stream);
        r->active_hash = fh_strdup(cfg->active_hash);
        r->hash_len = strlen(r->active_hash);
        r->maxlen_len = (size_t)snprintf(r->maxlen, sizeof(r->maxlen), "%ld", cfg->stream_maxlen);
        r->seen_ttl_len = (size_t)snprintf(r->seen_ttl, sizeof(r->seen_ttl), "%ld",
                                           cfg->seen_ttl_s > 0 ? cfg->seen_ttl_s : 604800L);
        r->max_backlog = cfg->max_backlog;
        r->backoff_min_ms = (uint64_t)cfg->backoff_min_ms;
        r->backoff_max_ms = (uint64_t)cfg->backoff_max_ms;
        r->timeout_ms = (uint64_t)cfg->timeout_ms;
        r->rng = uv_hrtime() ^ (uint64_t)(uintptr_t)r ^ UINT64_C(0x9e3779b97f4a7c15);
        if (!r->rng)
                r->rng = 1;
        r->state = ST_DOWN;

        uv_timer_init(loop, &r->reconnect_timer);
        uv_timer_init(loop, &r->watchdog);
        uv_timer_init(loop, &r->close_timer);
        r->reconnect_timer.data = r->watchdog.data = r->close_timer.data = r;
        r->open_handles = 3;
        r->gai.data = r;

        start_connect(r);
        *ret = r;
        return 0;
}

static bool level_ok(const char *level) {
        size_t n;

        if (!level)
                return false;
        n = strnlen(level, LEVEL_MAX + 1);
        if (n == 0 || n > LEVEL_MAX)
                return false;
        for (size_t i = 0; i < n; i++)
                if (!((level[i] >= 'a' && level[i] <= 'z') || level[i] == '_'))
                        return false;
        return true;
}

int fh_redis_send_payload(fh_redis *r, fh_payload *p, bool once, void *token) {
        item *it;

        if (!r || !p || p->kind != FH_OUT_ALERT || p->value_len == 0 || p->value_len > JSON_MAX ||
            !str_ok(p->field, FIELD_MAX) || !level_ok(p->level) || (once && !str_ok(p->dedupe, FIELD_MAX)))
                return -EINVAL;
        if (r->closing)
                return -ESHUTDOWN;
        if (r->backlog >= r->max_backlog)
                return -ENOBUFS;

        it = item_new(r);
        *it = (item){ .token = token, .kind = ITEM_ALERT, .ncmds = once ? 1 : 4, .p = fh_payload_ref(p),
                      .once = once };
        enqueue(r, it);
        pump(r);
        return 0;
}

int fh_redis_send_once(fh_redis *r, const char *json, size_t json_len, const char *field,
                       const char *level, bool cleared, const char *event_id, void *token) {
        if (!r || !json || json_len == 0 || json_len > JSON_MAX || !str_ok(field, FIELD_MAX) ||
            !level_ok(level) || (event_id && !str_ok(event_id, FIELD_MAX)))
                return -EINVAL;
        fh_payload *p = fh_payload_new(&(fh_payload_parts){
                .kind = FH_OUT_ALERT,
                .cleared = cleared,
                .value = json,
                .value_len = json_len,
                .field = field,
                .field_len = SIZE_MAX,
                .level = level,
                .level_len = SIZE_MAX,
                .dedupe = event_id,
                .dedupe_len = SIZE_MAX,
        });
        int rc = fh_redis_send_payload(r, p, event_id != NULL, token);

        fh_payload_unref(p);
        return rc;
}

int fh_redis_send(fh_redis *r, const char *json, size_t json_len, const char *field,
                  const char *level, bool cleared, void *token) {
        return fh_redis_send_once(r, json, json_len, field, level, cleared, NULL, token);
}

int fh_redis_sync_active(fh_redis *r, const char *const *fields, const char *const *jsons, size_t n) {
        size_t bytes = 0, chunks;
        item *it;
        char *p;

        if (!r || (n && (!fields || !jsons)) || n > SIZE_MAX / sizeof(sync_entry) / 2)
                return -EINVAL;
        for (size_t i = 0; i < n; i++) {
                if (!str_ok(fields[i], FIELD_MAX) || !jsons[i] || !jsons[i][0])
                        return -EINVAL;
                size_t jl = strnlen(jsons[i], JSON_MAX + 1);
                if (jl > JSON_MAX)
                        return -EINVAL;
                bytes += strlen(fields[i]) + 1 + jl + 1;
        }
        chunks = (n + SYNC_CHUNK - 1) / SYNC_CHUNK;
        if (chunks > 1000000)
                return -E2BIG;
        if (r->closing)
                return -ESHUTDOWN;
        if (r->backlog >= r->max_backlog)
                return -ENOBUFS;

        it = item_new(r);
        *it = (item){ .kind = ITEM_SYNC, .n = n, .ncmds = (unsigned)(3 + chunks) };
        it->entries = fh_malloc(n * sizeof(sync_entry) + bytes);
        p = (char *)(it->entries + n);
        for (size_t i = 0; i < n; i++) {
                sync_entry *e = &it->entries[i];
                e->field_len = strlen(fields[i]);
                memcpy(p, fields[i], e->field_len + 1);
                e->field = p;
                p += e->field_len + 1;
                e->json_len = strlen(jsons[i]);
                memcpy(p, jsons[i], e->json_len + 1);
                e->json = p;
                p += e->json_len + 1;
        }
        enqueue(r, it);
        pump(r);
        return 0;
}

void fh_redis_set_state_cb(fh_redis *r, fh_redis_state_fn fn, void *userdata) {
        r->state_fn = fn;
        r->state_data = userdata;
}

bool fh_redis_connected(const fh_redis *r) {
        return r && r->state == ST_READY;
}

size_t fh_redis_backlog(const fh_redis *r) {
        return r ? r->backlog : 0;
}

const fh_redis_stats *fh_redis_stats_get(const fh_redis *r) {
        return r ? &r->stats : NULL;
}

const char *fh_redis_last_error(const fh_redis *r) {
        return r ? r->last_error : "";
}

static void free_all(fh_redis *r) {
        item *it = r->head;

        while (it) {
                item *next = it->next;
                item_free(r, it);
                it = next;
        }
        while (r->free_items) {
                it = r->free_items;
                r->free_items = it->next;
                free(it);
        }
        free(r->host);
        free(r->username);
        free(r->password);
        free(r->channel);
        free(r->stream);
        free(r->active_hash);
        free(r);
}

static void maybe_finish(fh_redis *r) {
        size_t undelivered = r->backlog;

        if (r->open_handles > 0 || r->resolving)
                return;
        for (item *it = r->head; it; it = it->next)
                report(r, it, FH_REDIS_DEFERRED);
        if (r->done)
                r->done(r->done_userdata, undelivered);
        free_all(r);
}

static void on_handle_closed(uv_handle_t *h) {
        fh_redis *r = h->data;

        r->open_handles--;
        maybe_finish(r);
}

/* Runs from a timer, never inside hiredis. */
static void shutdown_now(fh_redis *r) {
        if (r->shutting)
                return;
        r->shutting = true;
        drop_connection(r);
        if (r->resolving)
                (void)uv_cancel((uv_req_t *)&r->gai); /* on_resolved still runs */
        uv_close((uv_handle_t *)&r->reconnect_timer, on_handle_closed);
        uv_close((uv_handle_t *)&r->watchdog, on_handle_closed);
        uv_close((uv_handle_t *)&r->close_timer, on_handle_closed);
}

static void on_close_timer(uv_timer_t *t) {
        shutdown_now(t->data);
}

void fh_redis_close(fh_redis *r, int64_t deadline_ms, void (*done)(void *userdata, size_t undelivered), void *userdata) {
        if (!r || r->closing)
                return;
        r->closing = true;
        r->done = done;
        r->done_userdata = userdata;
        /* Always through the loop: done never runs inside this call. */
        uv_timer_start(&r->close_timer, on_close_timer,
                       r->backlog == 0 || deadline_ms <= 0 ? 0 : (uint64_t)deadline_ms, 0);
}
