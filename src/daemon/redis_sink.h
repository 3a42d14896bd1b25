/* Alerts to Redis, through hiredis's async API on the daemon's libuv loop.
 *
 * For every alert: PUBLISH on the alerts channel and on "<channel>:<level>"
 * (live subscribers), XADD to a capped stream (gateways read it with a
 * consumer group and miss nothing while disconnected), and HSET/HDEL of the
 * hash of alerts active now (one HGETALL gives an operator console the
 * picture). While Redis is down, alerts wait in a bounded backlog, in order,
 * and the connection is retried with exponential backoff; the loop never
 * blocks. Runs on the loop thread only.
 *
 * Delivery is at-least-once and in order: after a lost connection the
 * backlog is resent from the oldest alert not fully answered, so Redis may
 * see an alert twice (one more PUBLISH and stream entry).
 * hiredis writes with write(2): the process must ignore SIGPIPE. */
#ifndef FENGHUO_REDIS_SINK_H
#define FENGHUO_REDIS_SINK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "payload.h"

typedef struct fh_redis_config {
        char *host;               /* default "127.0.0.1" (a path starting with '/' = unix socket) */
        int port;                 /* default 6379 */
        char *username;           /* Redis 6 ACL user (AUTH user pass); NULL: the default user */
        char *password;           /* NULL: no AUTH */
        int db;                   /* SELECT when not 0 */
        char *channel;            /* default "fenghuo:alerts"; per level "<channel>:<level>" */
        char *stream;             /* default "fenghuo:alerts:stream" */
        long stream_maxlen;       /* XADD MAXLEN ~ N, default 1000000 */
        char *active_hash;        /* default "fenghuo:alerts:active" */
        size_t max_backlog;       /* alerts held while down, default 100000 */
        int64_t backoff_min_ms;   /* default 100 */
        int64_t backoff_max_ms;   /* default 5000 */
        int64_t timeout_ms;       /* connect and command timeout, default 2000 */
        long seen_ttl_s;          /* how long an event id is remembered, default 7 days */
} fh_redis_config;

void fh_redis_config_defaults(fh_redis_config *c);   /* fills the defaults (static strings) */

/* Delivery reports for one fh_redis_send() with a non-NULL token: at most
 * one DEFERRED, then at most one DELIVERED, nothing after DELIVERED:
 *   FH_REDIS_DELIVERED: every command of the alert was answered. An error
 *     reply that retrying cannot fix (WRONGTYPE, unknown command) counts as
 *     answered, so one bad key cannot wedge the queue; it is counted in
 *     stats.errors and kept in fh_redis_last_error(). Errors that say the
 *     server cannot take writes now (LOADING, READONLY, OOM, ...) drop the
 *     connection and the alert is resent instead;
 *   FH_REDIS_DEFERRED: the connection was lost before that; the alert went
 *     back to the backlog and will be sent again (no second report). Also
 *     given at fh_redis_close() to every alert that was never delivered.
 * Called on the loop thread, never from inside fh_redis_send(). */
enum { FH_REDIS_DELIVERED = 0, FH_REDIS_DEFERRED = 1 };
typedef void (*fh_redis_ack_fn)(void *userdata, void *token, int status);

typedef struct fh_redis fh_redis;

/* Starts connecting at once; failures are retried, never fatal. */
int fh_redis_new(fh_redis **ret, uv_loop_t *loop, const fh_redis_config *cfg,
                 fh_redis_ack_fn ack, void *userdata);

/* Queues one alert. json: the alert event; field: the active-hash field
 * ("<rule>:<sensor>"); level: "red".. or "none"; cleared: HDEL instead of
 * HSET. Returns 0, or -ENOBUFS when the backlog is full (nothing queued: the
 * caller should stop consuming until fh_redis_backlog() drops), -EINVAL for
 * empty or oversized arguments (json over 1 MiB, field over 512 bytes, level
 * not [a-z_]{1,16}), -ESHUTDOWN after fh_redis_close(). Copies everything
 * (once, into a payload). */
int fh_redis_send(fh_redis *r, const char *json, size_t json_len, const char *field,
                  const char *level, bool cleared, void *token);

/* The same, at most once per event_id: a Lua script sets
 * "<stream>:seen:<event_id>" (expiring after seen_ttl_s) and does the
 * PUBLISHes, XADD and HSET/HDEL only when the id was new, so a resend after
 * a broken connection or a daemon restart is not delivered twice. */
int fh_redis_send_once(fh_redis *r, const char *json, size_t json_len, const char *field,
                       const char *level, bool cleared, const char *event_id, void *token);

/* The same for a payload built once and shared (payload.h): the sink
 * keeps a reference until the alert is answered and copies nothing; the
 * caller keeps its own. once: at most once per p->dedupe, as
 * fh_redis_send_once. The same checks and returns as fh_redis_send_once
 * (-EINVAL also for a payload that is not an alert). */
int fh_redis_send_payload(fh_redis *r, fh_payload *p, bool once, void *token);

/* Replaces the active hash with exactly these entries (DEL + HSET in a
 * MULTI/EXEC), queued like an alert, so a restarted daemon leaves no stale
 * entries. fields[i] -> jsons[i]. */
int fh_redis_sync_active(fh_redis *r, const char *const *fields, const char *const *jsons, size_t n);

/* Told when the connection becomes ready (up) and when it is lost (down),
 * on the loop thread; fn may call fh_redis_send and fh_redis_sync_active. */
typedef void (*fh_redis_state_fn)(void *userdata, bool up);
void fh_redis_set_state_cb(fh_redis *r, fh_redis_state_fn fn, void *userdata);

bool fh_redis_connected(const fh_redis *r);
size_t fh_redis_backlog(const fh_redis *r);       /* alerts not yet answered */

typedef struct fh_redis_stats {
        uint64_t sent;         /* alerts and syncs written to a connection, resends included */
        uint64_t delivered;    /* fully answered (with or without error replies) */
        uint64_t errors;       /* error replies, AUTH/SELECT refusals included */
        uint64_t reconnects;   /* connections made ready after the first one */
        uint64_t backlog_max;
} fh_redis_stats;
const fh_redis_stats *fh_redis_stats_get(const fh_redis *r);

/* Text of the last failure (connect, timeout, error reply), "" if none; for
 * the daemon to log when stats.errors grows or the connection drops. */
const char *fh_redis_last_error(const fh_redis *r);

/* Stops: waits (on the loop) until the backlog is empty or deadline_ms has
 * passed, then disconnects and calls done (always from the loop, never
 * inside this call). The object is freed after done returns. */
void fh_redis_close(fh_redis *r, int64_t deadline_ms, void (*done)(void *userdata, size_t undelivered), void *userdata);

#endif
