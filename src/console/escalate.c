/* Escalation: a red alert nobody has acknowledged within
 * console.ack_timeout becomes an `unacknowledged` event on the alerts
 * topic (docs/integration.md), produced with librdkafka's idempotent
 * producer, keyed by sensor like every alert.
 *
 * Once per alert, also across console restarts and several consoles: the
 * clock starts at "<prefix>red_since:<alert_id>" (SET NX, the first time any
 * console saw the alert red: within seconds of the event, and in wall time,
 * so a replayed storm with old timestamps does not escalate at once), and
 * only the console whose SET NX of "<prefix>escalated:<alert_id>" succeeds
 * produces. A failed delivery deletes that key so the next round retries. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <librdkafka/rdkafka.h>

#include "fenghuo/buf.h"
#include "console_internal.h"

#define KEEP_S "2592000"       /* 30 days: longer than any alert needs */

struct fh_escalator {
        fh_console *con;
        const fh_console_config *cfg;
        rd_kafka_t *rk;
        pthread_t thread;
        pthread_mutex_t lock;
        pthread_cond_t cond;
        bool stopping;
        int64_t period_ms;
        unsigned long produced;
};

typedef struct delivery {
        fh_escalator *e;
        char key[];            /* the escalated:<alert_id> key */
} delivery;

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
        delivery *d = m->_private;
        if (!d)
                return;
        if (m->err) {
                fprintf(stderr, "fenghuo console: escalation not delivered (%s), retrying later\n",
                        rd_kafka_err2str(m->err));
                freeReplyObject(fh_console_redis(d->e->con, 2, "DEL", d->key));
        } else {
                pthread_mutex_lock(&d->e->lock);
                d->e->produced++;
                pthread_mutex_unlock(&d->e->lock);
        }
        free(d);
}

/* The JSON value of a top-level string member of an event the daemon wrote;
 * "" when absent. Such members hold no escapes before the free text
 * (message), which is taken whole below. */
static void member(const char *json, const char *name, char *out, size_t n) {
        char pat[64];
        snprintf(pat, sizeof(pat), "\"%s\":\"", name);
        const char *p = strstr(json, pat);
        out[0] = '\0';
        if (!p)
                return;
        p += strlen(pat);
        size_t len = strcspn(p, "\"\\");
        if (len < n) {
                memcpy(out, p, len);
                out[len] = '\0';
        }
}

static void iso_now(int tz_min, char *out, size_t n) {
        time_t t = time(NULL) + tz_min * 60;
        struct tm tm;
        gmtime_r(&t, &tm);
        size_t k = strftime(out, n, "%Y-%m-%dT%H:%M:%S", &tm);
        snprintf(out + k, n - k, "%c%02d:%02d", tz_min < 0 ? '-' : '+', abs(tz_min) / 60, abs(tz_min) % 60);
}

static void escalate(fh_escalator *e, const char *json, size_t json_len, const char *alert_id, int64_t since) {
        const fh_console_config *cfg = e->cfg;
        char key[800], sensor[128], rule[128], ts[40];
        snprintf(key, sizeof(key), "%sescalated:%s", cfg->key_prefix, alert_id);
        redisReply *rep = fh_console_redis(e->con, 6, "SET", key, "1", "NX", "EX", KEEP_S);
        bool mine = rep && rep->type == REDIS_REPLY_STATUS;
        freeReplyObject(rep);
        if (!mine)
                return;

        member(json, "sensor", sensor, sizeof(sensor));
        member(json, "rule", rule, sizeof(rule));
        iso_now(cfg->tz_offset_min, ts, sizeof(ts));
        int64_t waited = (fh_console_now_ms() - since) / 1000;
        fh_buf b = FH_BUF_NULL;
        fh_buf_puts(&b, "{\"alert_id\":");
        fh_buf_json_string(&b, alert_id, strlen(alert_id));
        fh_buf_puts(&b, ",\"event\":\"unacknowledged\",\"rule\":");
        fh_buf_json_string(&b, rule, strlen(rule));
        fh_buf_puts(&b, ",\"sensor\":");
        fh_buf_json_string(&b, sensor, strlen(sensor));
        fh_buf_printf(&b, ",\"level\":\"red\",\"severity\":1,\"ts\":\"%s\",\"unacknowledged_s\":%lld,"
                          "\"ack_timeout_s\":%lld,\"alert\":",
                      ts, (long long) waited, (long long) (cfg->ack_timeout_ms / 1000));
        fh_buf_append(&b, json, json_len);
        fh_buf_puts(&b, "}");

        delivery *d = fh_malloc(sizeof(*d) + strlen(key) + 1);
        d->e = e;
        strcpy(d->key, key);
        rd_kafka_resp_err_t err = rd_kafka_producev(e->rk, RD_KAFKA_V_TOPIC(cfg->alerts_topic),
                                                    RD_KAFKA_V_KEY(sensor, strlen(sensor)),
                                                    RD_KAFKA_V_VALUE(b.data, b.len),
                                                    RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                                    RD_KAFKA_V_OPAQUE(d), RD_KAFKA_V_END);
        fh_buf_free(&b);
        if (err) {
                fprintf(stderr, "fenghuo console: cannot produce an escalation: %s\n", rd_kafka_err2str(err));
                freeReplyObject(fh_console_redis(e->con, 2, "DEL", key));
                free(d);
        }
}

/* One look at the active hash. */
static void round_once(fh_escalator *e) {
        const fh_console_config *cfg = e->cfg;
        redisReply *all = fh_console_redis(e->con, 2, "HGETALL", cfg->active_hash);
        if (!all || all->type != REDIS_REPLY_ARRAY) {
                freeReplyObject(all);
                return;
        }
        int64_t now = fh_console_now_ms();
        char now_s[32];
        snprintf(now_s, sizeof(now_s), "%lld", (long long) now);
        for (size_t i = 0; i + 1 < all->elements; i += 2) {
                const redisReply *v = all->element[i + 1];
                char level[16], alert_id[640], key[800];
                member(v->str, "level", level, sizeof(level));
                member(v->str, "alert_id", alert_id, sizeof(alert_id));
                if (strcmp(level, "red") || !*alert_id)
                        continue;
                snprintf(key, sizeof(key), "%sack:%s", cfg->key_prefix, alert_id);
                redisReply *ack = fh_console_redis(e->con, 2, "EXISTS", key);
                bool acked = ack && ack->type == REDIS_REPLY_INTEGER && ack->integer > 0;
                freeReplyObject(ack);
                if (acked)
                        continue;
                snprintf(key, sizeof(key), "%sred_since:%s", cfg->key_prefix, alert_id);
                freeReplyObject(fh_console_redis(e->con, 6, "SET", key, now_s, "NX", "EX", KEEP_S));
                redisReply *since = fh_console_redis(e->con, 2, "GET", key);
                int64_t t = since && since->type == REDIS_REPLY_STRING ? atoll(since->str) : now;
                freeReplyObject(since);
                if (now - t >= cfg->ack_timeout_ms)
                        escalate(e, v->str, v->len, alert_id, t);
        }
        freeReplyObject(all);
}

static void *run(void *arg) {
        fh_escalator *e = arg;

        pthread_mutex_lock(&e->lock);
        while (!e->stopping) {
                pthread_mutex_unlock(&e->lock);
                round_once(e);
                rd_kafka_poll(e->rk, 0);
                struct timespec until;
                clock_gettime(CLOCK_REALTIME, &until);
                until.tv_sec += e->period_ms / 1000;
                until.tv_nsec += (e->period_ms % 1000) * 1000000;
                if (until.tv_nsec >= 1000000000) {
                        until.tv_sec++;
                        until.tv_nsec -= 1000000000;
                }
                pthread_mutex_lock(&e->lock);
                while (!e->stopping && pthread_cond_timedwait(&e->cond, &e->lock, &until) != ETIMEDOUT)
                        ;
        }
        pthread_mutex_unlock(&e->lock);
        return NULL;
}

int fh_escalator_start(fh_escalator **ret, fh_console *con, const fh_console_config *cfg, char *err,
                       size_t err_len) {
        char kerr[512];
        rd_kafka_conf_t *conf = rd_kafka_conf_new();
        bool bad = false;

        for (size_t i = 0; i < cfg->kafka_props.n && !bad; i++)
                bad = rd_kafka_conf_set(conf, cfg->kafka_props.v[i].key, cfg->kafka_props.v[i].value, kerr,
                                        sizeof(kerr)) != RD_KAFKA_CONF_OK;
        if (!bad)
                bad = rd_kafka_conf_set(conf, "bootstrap.servers", cfg->brokers, kerr, sizeof(kerr)) != RD_KAFKA_CONF_OK ||
                      rd_kafka_conf_set(conf, "enable.idempotence", "true", kerr, sizeof(kerr)) != RD_KAFKA_CONF_OK;
        if (bad) {
                snprintf(err, err_len, "kafka: %s", kerr);
                rd_kafka_conf_destroy(conf);
                return -EINVAL;
        }
        rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
        rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, kerr, sizeof(kerr));
        if (!rk) {
                snprintf(err, err_len, "kafka: %s", kerr);
                rd_kafka_conf_destroy(conf);
                return -EINVAL;
        }
        fh_escalator *e = fh_calloc(1, sizeof(*e));
        e->con = con;
        e->cfg = cfg;
        e->rk = rk;
        e->period_ms = cfg->ack_timeout_ms < 10000 ? 200 : 5000;
        pthread_mutex_init(&e->lock, NULL);
        pthread_cond_init(&e->cond, NULL);
        int rc = pthread_create(&e->thread, NULL, run, e);
        if (rc) {
                snprintf(err, err_len, "cannot start a thread: %s", strerror(rc));
                rd_kafka_destroy(rk);
                free(e);
                return -rc;
        }
        *ret = e;
        return 0;
}

unsigned long fh_escalator_produced(fh_escalator *e) {
        pthread_mutex_lock(&e->lock);
        unsigned long n = e->produced;
        pthread_mutex_unlock(&e->lock);
        return n;
}

void fh_escalator_stop(fh_escalator *e) {
        if (!e)
                return;
        pthread_mutex_lock(&e->lock);
        e->stopping = true;
        pthread_cond_broadcast(&e->cond);
        pthread_mutex_unlock(&e->lock);
        pthread_join(e->thread, NULL);
        rd_kafka_flush(e->rk, 5000);
        rd_kafka_destroy(e->rk);
        pthread_cond_destroy(&e->cond);
        pthread_mutex_destroy(&e->lock);
        free(e);
}
