/* The console's HTTP server: libmicrohttpd with its internal polling
 * thread and one thread per connection. A live page holds its connection
 * open (Server-Sent Events) and its thread sleeps on a condition variable
 * until the stream follower has something new; every other request is a
 * few quick Redis commands on one shared, mutex-guarded hiredis context.
 * The number of operators is small, so a thread each is cheap, and blocking
 * code stays simple (docs/architecture.md). */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <syslog.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <time.h>

#include <crypt.h>
#include <hiredis/hiredis.h>
#include <microhttpd.h>

#include "fenghuo/buf.h"
#include "assets.h"
#include "console.h"
#include "console_internal.h"

#define BODY_MAX        (64u << 10)
#define RING            256
#define KEEPALIVE_S     15
#define NOTE_MAX        500
#define SILENCE_MAX_MIN (30 * 24 * 60)
#define HISTORY_MS      (24 * 3600 * 1000LL)
#define HISTORY_MAX     20000
#define ACK_TTL_S       (30 * 24 * 3600)

enum role { ROLE_NONE, ROLE_VIEWER, ROLE_OPERATOR };

typedef struct user {
        char *name;
        char *hash;
        enum role role;
} user;

typedef struct ring_entry {
        uint64_t seq;
        char *event;           /* SSE event name */
        char *data;            /* one line of JSON */
} ring_entry;

struct fh_console {
        const fh_console_config *cfg;
        const fh_engine *e;            /* the rules and registry; never fed */
        const fh_registry *reg;
        const fh_ruleset *rs;
        struct MHD_Daemon *mhd;
        int port;
        pthread_mutex_t ulock; /* users, n_users, users_checked_ms */
        user *users;
        size_t n_users;
        int64_t users_checked_ms;
        pthread_mutex_t reload_lock;   /* one reader of the users file; users_st */
        struct stat users_st;  /* the file last read (or found broken) */
        bool users_st_valid;
        char *dummy_hash;      /* checked for unknown names, so they take as long */
        fh_login_guard *guard;
        pthread_mutex_t login_lock;    /* one password check at a time */

        pthread_mutex_t rlock; /* the shared Redis context */
        redisContext *rc;

        pthread_mutex_t lock;  /* the ring, seq, stopping */
        pthread_cond_t cond;
        ring_entry ring[RING];
        uint64_t seq;
        bool stopping;
        pthread_t follower;
        bool follower_started;
        fh_escalator *escalator;
};

/* ---- Redis ---------------------------------------------------------------- */

static redisContext *rconnect(const fh_console_config *cfg, int timeout_s) {
        struct timeval tv = { timeout_s, 0 };
        redisContext *rc = cfg->redis_host[0] == '/' ? redisConnectUnixWithTimeout(cfg->redis_host, tv)
                                                     : redisConnectWithTimeout(cfg->redis_host, cfg->redis_port, tv);
        redisReply *rep;

        if (!rc || rc->err) {
                redisFree(rc);
                return NULL;
        }
        redisSetTimeout(rc, tv);
        if (cfg->redis_password) {
                rep = cfg->redis_username ? redisCommand(rc, "AUTH %s %s", cfg->redis_username, cfg->redis_password)
                                          : redisCommand(rc, "AUTH %s", cfg->redis_password);
                bool ok = rep && rep->type != REDIS_REPLY_ERROR;
                freeReplyObject(rep);
                if (!ok) {
                        redisFree(rc);
                        return NULL;
                }
        }
        if (cfg->redis_db) {
                rep = redisCommand(rc, "SELECT %d", cfg->redis_db);
                bool ok = rep && rep->type != REDIS_REPLY_ERROR;
                freeReplyObject(rep);
                if (!ok) {
                        redisFree(rc);
                        return NULL;
                }
        }
        return rc;
}

/* One command on the shared context, reconnecting once when the connection
 * was lost. NULL when Redis cannot be reached; an error reply is returned
 * as it is. */
static redisReply *rcmd_argv(fh_console *c, int argc, const char **argv, const size_t *lens) {
        redisReply *rep = NULL;

        pthread_mutex_lock(&c->rlock);
        for (int attempt = 0; attempt < 2 && !rep; attempt++) {
                if (!c->rc)
                        c->rc = rconnect(c->cfg, 2);
                if (!c->rc)
                        break;
                rep = redisCommandArgv(c->rc, argc, argv, lens);
                if (!rep) {
                        redisFree(c->rc);
                        c->rc = NULL;
                }
        }
        pthread_mutex_unlock(&c->rlock);
        return rep;
}

static redisReply *rcmd_va(fh_console *c, int argc, va_list ap) {
        const char *argv[16];
        size_t lens[16];

        for (int i = 0; i < argc && i < 16; i++) {
                argv[i] = va_arg(ap, const char *);
                lens[i] = strlen(argv[i]);
        }
        return rcmd_argv(c, argc < 16 ? argc : 16, argv, lens);
}

static redisReply *redis_cmd(fh_console *c, int argc, ...) {
        va_list ap;
        va_start(ap, argc);
        redisReply *rep = rcmd_va(c, argc, ap);
        va_end(ap);
        return rep;
}

redisReply *fh_console_redis(fh_console *c, int argc, ...) {
        va_list ap;
        va_start(ap, argc);
        redisReply *rep = rcmd_va(c, argc, ap);
        va_end(ap);
        return rep;
}

static bool reply_ok(const redisReply *rep) {
        return rep && rep->type != REDIS_REPLY_ERROR;
}

int64_t fh_console_now_ms(void) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- live events ---------------------------------------------------------- */

static void publish_locked(fh_console *c, const char *event, const char *data, size_t len) {
        ring_entry *e = &c->ring[++c->seq % RING];
        free(e->event);
        free(e->data);
        e->seq = c->seq;
        e->event = fh_strdup(event);
        e->data = fh_strndup(data, len);
        pthread_cond_broadcast(&c->cond);
}

static void publish(fh_console *c, const char *event, const char *data) {
        pthread_mutex_lock(&c->lock);
        publish_locked(c, event, data, strlen(data));
        pthread_mutex_unlock(&c->lock);
}

static bool stopping(fh_console *c) {
        pthread_mutex_lock(&c->lock);
        bool s = c->stopping;
        pthread_mutex_unlock(&c->lock);
        return s;
}

/* Follows the alert stream with XREAD BLOCK from its end. A second's block
 * bounds how long a stop waits; a lost connection is retried every second,
 * from the last entry seen, so nothing in between is missed. */
static void *follow(void *arg) {
        fh_console *c = arg;
        redisContext *rc = NULL;
        char last[64] = "$";

        while (!stopping(c)) {
                if (!rc && !(rc = rconnect(c->cfg, 3))) {
                        struct timespec ts = { 1, 0 };
                        nanosleep(&ts, NULL);
                        continue;
                }
                redisReply *rep = redisCommand(rc, "XREAD COUNT 100 BLOCK 1000 STREAMS %s %s", c->cfg->stream, last);
                if (!rep) {
                        redisFree(rc);
                        rc = NULL;
                        continue;
                }
                if (rep->type == REDIS_REPLY_ARRAY && rep->elements == 1 && rep->element[0]->elements == 2) {
                        redisReply *entries = rep->element[0]->element[1];
                        pthread_mutex_lock(&c->lock);
                        for (size_t i = 0; i < entries->elements; i++) {
                                redisReply *e = entries->element[i];
                                if (e->type != REDIS_REPLY_ARRAY || e->elements != 2)
                                        continue;
                                snprintf(last, sizeof(last), "%s", e->element[0]->str);
                                redisReply *kv = e->element[1];
                                for (size_t j = 0; j + 1 < kv->elements; j += 2)
                                        if (!strcmp(kv->element[j]->str, "alert"))
                                                publish_locked(c, "alert", kv->element[j + 1]->str,
                                                               kv->element[j + 1]->len);
                        }
                        pthread_mutex_unlock(&c->lock);
                } else if (rep->type == REDIS_REPLY_ERROR) {
                        struct timespec ts = { 1, 0 };
                        nanosleep(&ts, NULL);
                }
                freeReplyObject(rep);
        }
        redisFree(rc);
        return NULL;
}

typedef struct sse {
        fh_console *c;
        uint64_t seq;
        fh_buf out;
        size_t off;
} sse;

static void sse_fill(sse *s) {
        fh_console *c = s->c;

        fh_buf_reset(&s->out);
        s->off = 0;
        if (c->seq - s->seq > RING) {
                /* Fell behind the ring: the page reloads the whole picture. */
                fh_buf_puts(&s->out, "event: resync\ndata: {}\n\n");
                s->seq = c->seq;
                return;
        }
        for (; s->seq < c->seq; s->seq++) {
                const ring_entry *e = &c->ring[(s->seq + 1) % RING];
                fh_buf_printf(&s->out, "event: %s\ndata: %s\n\n", e->event, e->data);
        }
}

static ssize_t sse_read(void *cls, uint64_t pos, char *buf, size_t max) {
        sse *s = cls;
        fh_console *c = s->c;

        if (s->off == s->out.len) {
                struct timespec until;
                clock_gettime(CLOCK_REALTIME, &until);
                until.tv_sec += KEEPALIVE_S;
                pthread_mutex_lock(&c->lock);
                int rc = 0;
                while (!c->stopping && s->seq == c->seq && rc != ETIMEDOUT)
                        rc = pthread_cond_timedwait(&c->cond, &c->lock, &until);
                if (c->stopping) {
                        pthread_mutex_unlock(&c->lock);
                        return MHD_CONTENT_READER_END_OF_STREAM;
                }
                if (s->seq == c->seq) {
                        fh_buf_reset(&s->out);
                        s->off = 0;
                        fh_buf_puts(&s->out, ": keepalive\n\n");
                } else
                        sse_fill(s);
                pthread_mutex_unlock(&c->lock);
        }
        size_t n = FH_MIN(max, s->out.len - s->off);
        memcpy(buf, s->out.data + s->off, n);
        s->off += n;
        return (ssize_t) n;
}

static void sse_free(void *cls) {
        sse *s = cls;
        fh_buf_free(&s->out);
        free(s);
}

/* ---- users and sessions --------------------------------------------------- */

void fh_console_log(int prio, const char *fmt, ...) {
        static const char *const names[] = { "emerg", "alert", "crit", "error", "warning", "notice", "info", "debug" };
        char line[1024];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(line, sizeof(line), fmt, ap);
        va_end(ap);
        if (getenv("JOURNAL_STREAM"))
                fprintf(stderr, "<%d>fenghuo console: %s\n", prio & 7, line);
        else
                fprintf(stderr, "fenghuo console: %s: %s\n", names[prio & 7], line);
}

static void free_users(user *v, size_t n) {
        for (size_t i = 0; i < n; i++) {
                free(v[i].name);
                free(v[i].hash);
        }
        free(v);
}

static const user *find_in(const user *v, size_t n, const char *name) {
        for (size_t i = 0; i < n; i++)
                if (!strcmp(v[i].name, name))
                        return &v[i];
        return NULL;
}

/* The whole file or nothing: a broken line leaves *ret untouched. */
static int parse_users(const char *path, user **ret, size_t *ret_n, char *err, size_t err_len) {
        FILE *f = fopen(path, "re");
        if (!f) {
                int e = errno;
                snprintf(err, err_len, "cannot read users file %s: %s", path, strerror(e));
                return -e;
        }
        user *v = NULL;
        size_t n = 0;
        char line[1024];
        unsigned lineno = 0;
        int rc = 0;
        while (fgets(line, sizeof(line), f)) {
                lineno++;
                line[strcspn(line, "\r\n")] = '\0';
                if (line[0] == '\0' || line[0] == '#')
                        continue;
                char *name = line, *hash = strchr(line, ':');
                char *role = NULL;
                if (hash) {
                        *hash++ = '\0';
                        /* crypt hashes hold '$' and '.', never ':' */
                        role = strchr(hash, ':');
                        if (role)
                                *role++ = '\0';
                }
                enum role r = !role || !strcmp(role, "operator") ? ROLE_OPERATOR
                            : !strcmp(role, "viewer") ? ROLE_VIEWER : ROLE_NONE;
                if (!hash || !*name || hash[0] != '$' || r == ROLE_NONE) {
                        snprintf(err, err_len, "%s:%u: expected name:crypt-hash[:operator|viewer]", path, lineno);
                        rc = -EINVAL;
                        break;
                }
                if (find_in(v, n, name)) {
                        snprintf(err, err_len, "%s:%u: user '%s' is listed twice", path, lineno, name);
                        rc = -EINVAL;
                        break;
                }
                v = fh_realloc(v, (n + 1) * sizeof(*v));
                v[n++] = (user) { fh_strdup(name), fh_strdup(hash), r };
        }
        if (rc == 0 && ferror(f)) {
                snprintf(err, err_len, "cannot read users file %s: %s", path, strerror(EIO));
                rc = -EIO;
        }
        fclose(f);
        if (rc < 0) {
                free_users(v, n);
                return rc;
        }
        *ret = v;
        *ret_n = n;
        return 0;
}

static bool same_file(const struct stat *a, const struct stat *b) {
        return a->st_dev == b->st_dev && a->st_ino == b->st_ino && a->st_size == b->st_size &&
               a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec;
}

static void end_sessions(fh_console *c, const char *name);

/* Re-reads the users file when forced (SIGHUP) or when it changed since it
 * was last read. A file that cannot be read or parsed keeps the users as
 * they were (logged once per version of the file). */
static int reload_users(fh_console *c, bool force) {
        const char *path = c->cfg->users_file;
        struct stat st;
        char err[600];
        int rc = 0;

        if (!path)
                return 0;
        pthread_mutex_lock(&c->reload_lock);
        if (stat(path, &st) < 0) {
                rc = -errno;
                if (force || c->users_st_valid)
                        fh_console_log(LOG_ERR, "cannot read users file %s: %s; keeping the %zu users read before",
                                       path, strerror(-rc), c->n_users);
                c->users_st_valid = false;
                goto out;
        }
        if (!force && c->users_st_valid && same_file(&st, &c->users_st))
                goto out;
        user *nu;
        size_t nn;
        c->users_st = st;
        c->users_st_valid = true;
        if ((rc = parse_users(path, &nu, &nn, err, sizeof(err))) < 0) {
                fh_console_log(LOG_ERR, "%s; keeping the %zu users read before", err, c->n_users);
                goto out;
        }
        pthread_mutex_lock(&c->ulock);
        user *old = c->users;
        size_t on = c->n_users;
        c->users = nu;
        c->n_users = nn;
        pthread_mutex_unlock(&c->ulock);
        size_t removed = 0;
        for (size_t i = 0; i < on; i++)
                if (!find_in(nu, nn, old[i].name)) {
                        end_sessions(c, old[i].name);
                        fh_console_log(LOG_NOTICE, "user removed, sessions ended user=%s", old[i].name);
                        removed++;
                }
        fh_console_log(LOG_NOTICE, "users file read path=%s users=%zu removed=%zu", path, nn, removed);
        free_users(old, on);
out:
        pthread_mutex_unlock(&c->reload_lock);
        return rc;
}

int fh_console_reload_users(fh_console *c) {
        return reload_users(c, true);
}

/* The file's mtime is looked at on every login, and at most once a second
 * while sessions are used, so an edit takes effect without a signal. */
static void users_check(fh_console *c, bool always) {
        int64_t now = fh_console_now_ms();
        pthread_mutex_lock(&c->ulock);
        bool due = always || now - c->users_checked_ms >= 1000;
        if (due)
                c->users_checked_ms = now;
        pthread_mutex_unlock(&c->ulock);
        if (due)
                reload_users(c, false);
}

/* A copy of what the users file says of name: the list may be replaced
 * by a reload at any time. */
static bool lookup_user(fh_console *c, const char *name, char *hash, size_t n, enum role *role) {
        pthread_mutex_lock(&c->ulock);
        const user *u = find_in(c->users, c->n_users, name);
        if (u) {
                if (hash)
                        snprintf(hash, n, "%s", u->hash);
                *role = u->role;
        }
        pthread_mutex_unlock(&c->ulock);
        return u != NULL;
}

static bool check_password(const char *hash, const char *password) {
        struct crypt_data cd;
        memset(&cd, 0, sizeof(cd));
        const char *h = crypt_r(password, hash, &cd);
        if (!h || h[0] == '*')
                return false;
        size_t n = strlen(hash);
        if (strlen(h) != n)
                return false;
        unsigned char d = 0;
        for (size_t i = 0; i < n; i++)
                d |= (unsigned char) (h[i] ^ hash[i]);
        return d == 0;
}

char *fh_console_hash_password(const char *password) {
        char salt[CRYPT_GENSALT_OUTPUT_SIZE];
        struct crypt_data cd;

        /* NULL prefix: libcrypt's preferred method, yescrypt on Debian 12. */
        if (!crypt_gensalt_rn(NULL, 0, NULL, 0, salt, sizeof(salt)))
                return NULL;
        memset(&cd, 0, sizeof(cd));
        const char *h = crypt_r(password, salt, &cd);
        return h && h[0] != '*' ? fh_strdup(h) : NULL;
}

typedef struct who {
        char user[128];
        enum role role;
        bool anonymous;        /* console.anonymous_read, not logged in */
} who;

static void session_key(const fh_console *c, const char *token, char *out, size_t n) {
        snprintf(out, n, "%ssession:%s", c->cfg->key_prefix, token);
}

static void user_sessions_key(const fh_console *c, const char *name, char *out, size_t n) {
        snprintf(out, n, "%suser_sessions:%s", c->cfg->key_prefix, name);
}

/* Every session of name, found through the set of its tokens that a login
 * adds to. */
static void end_sessions(fh_console *c, const char *name) {
        char set[256], key[256];
        user_sessions_key(c, name, set, sizeof(set));
        redisReply *rep = redis_cmd(c, 2, "SMEMBERS", set);
        for (size_t i = 0; rep && rep->type == REDIS_REPLY_ARRAY && i < rep->elements; i++)
                if (rep->element[i]->type == REDIS_REPLY_STRING) {
                        session_key(c, rep->element[i]->str, key, sizeof(key));
                        freeReplyObject(redis_cmd(c, 2, "DEL", key));
                }
        freeReplyObject(rep);
        freeReplyObject(redis_cmd(c, 2, "DEL", set));
}

static void identify(fh_console *c, struct MHD_Connection *conn, who *w) {
        enum role r;

        w->user[0] = '\0';
        w->role = ROLE_NONE;
        w->anonymous = false;
        if (c->cfg->user_header) {
                const char *h = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, c->cfg->user_header);
                if (h && *h && strlen(h) < sizeof(w->user)) {
                        snprintf(w->user, sizeof(w->user), "%s", h);
                        w->role = lookup_user(c, h, NULL, 0, &r) ? r : ROLE_OPERATOR;
                        return;
                }
        }
        const char *tok = MHD_lookup_connection_value(conn, MHD_COOKIE_KIND, "fh_session");
        if (c->cfg->users_file && tok && strlen(tok) == 64 && strspn(tok, "0123456789abcdef") == 64) {
                char key[256];
                session_key(c, tok, key, sizeof(key));
                users_check(c, false);
                redisReply *rep = redis_cmd(c, 2, "GET", key);
                if (rep && rep->type == REDIS_REPLY_STRING && rep->len > 2 && rep->str[1] == ' ') {
                        /* The role is the file's now: a user demoted or
                         * removed since the login has that effect at once,
                         * also when another console read the new file. */
                        if (lookup_user(c, rep->str + 2, NULL, 0, &r)) {
                                snprintf(w->user, sizeof(w->user), "%s", rep->str + 2);
                                w->role = r;
                        } else
                                freeReplyObject(redis_cmd(c, 2, "DEL", key));
                }
                freeReplyObject(rep);
                if (w->role != ROLE_NONE)
                        return;
        }
        if (c->cfg->anonymous_read) {
                snprintf(w->user, sizeof(w->user), "%s", "访客");
                w->role = ROLE_VIEWER;
                w->anonymous = true;
        }
}

/* ---- responses ------------------------------------------------------------ */

static enum MHD_Result respond(struct MHD_Connection *conn, unsigned status, const char *type,
                               const void *data, size_t len, bool copy) {
        struct MHD_Response *r = MHD_create_response_from_buffer(len, (void *) data,
                                                                 copy ? MHD_RESPMEM_MUST_COPY : MHD_RESPMEM_PERSISTENT);
        if (!r)
                return MHD_NO;
        MHD_add_response_header(r, "Content-Type", type);
        MHD_add_response_header(r, "Cache-Control", "no-store");
        MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
        MHD_add_response_header(r, "Content-Security-Policy",
                                "default-src 'self'; style-src 'self'; img-src 'self' data:; frame-ancestors 'none'");
        enum MHD_Result ret = MHD_queue_response(conn, status, r);
        MHD_destroy_response(r);
        return ret;
}

static enum MHD_Result json(struct MHD_Connection *conn, unsigned status, const fh_buf *b) {
        return respond(conn, status, "application/json; charset=utf-8", b->data, b->len, true);
}

static enum MHD_Result json_error(struct MHD_Connection *conn, unsigned status, const char *msg) {
        fh_buf b = FH_BUF_NULL;
        fh_buf_puts(&b, "{\"error\":");
        fh_buf_json_string(&b, msg, strlen(msg));
        fh_buf_puts(&b, "}");
        enum MHD_Result r = json(conn, status, &b);
        fh_buf_free(&b);
        return r;
}

/* ---- forms ---------------------------------------------------------------- */

static int hexval(char ch) {
        if (ch >= '0' && ch <= '9')
                return ch - '0';
        if (ch >= 'a' && ch <= 'f')
                return ch - 'a' + 10;
        if (ch >= 'A' && ch <= 'F')
                return ch - 'A' + 10;
        return -1;
}

/* The value of name in an application/x-www-form-urlencoded body, decoded
 * into out; false when absent, too long or holding a control character. */
bool fh_console_form_get(const char *body, size_t len, const char *name, char *out, size_t n) {
        size_t nl = strlen(name);
        const char *p = body, *end = body + len;

        while (p < end) {
                const char *amp = memchr(p, '&', (size_t) (end - p));
                const char *stop = amp ? amp : end;
                if ((size_t) (stop - p) > nl && !memcmp(p, name, nl) && p[nl] == '=') {
                        size_t o = 0;
                        for (const char *q = p + nl + 1; q < stop; q++) {
                                int ch = (unsigned char) *q;
                                if (ch == '+')
                                        ch = ' ';
                                else if (ch == '%') {
                                        if (stop - q < 3 || hexval(q[1]) < 0 || hexval(q[2]) < 0)
                                                return false;
                                        ch = hexval(q[1]) * 16 + hexval(q[2]);
                                        q += 2;
                                }
                                if (ch < 0x20 || ch == 0x7f || o + 1 >= n)
                                        return false;
                                out[o++] = (char) ch;
                        }
                        out[o] = '\0';
                        return true;
                }
                p = stop + 1;
        }
        return false;
}

/* ---- the API -------------------------------------------------------------- */

static const char *op_name(fh_opcode op) {
        switch (op) {
        case FH_OP_LT: return "<";
        case FH_OP_LE: return "<=";
        case FH_OP_GT: return ">";
        case FH_OP_GE: return ">=";
        case FH_OP_EQ: return "==";
        case FH_OP_NE: return "!=";
        default: return NULL;
        }
}

/* {"red":{"op":">=","value":100},...} for the tiers whose condition is one
 * comparison of the rule's `report` (the value an alert carries) with a
 * bound the station alone decides (a number or a station attribute). A tier
 * that compares something else (rainstorm's yellow is a 6 h sum, its value
 * the 3 h sum) or has a compound condition has none: its condition text is
 * in put_conditions(). */
static void put_thresholds(const fh_console *c, const fh_rule *rule, const fh_station *st, fh_buf *b) {
        bool first = true;

        fh_buf_putc(b, '{');
        for (int l = FH_LEVEL_RED; l >= FH_LEVEL_BLUE; l--) {
                fh_threshold t;
                if (!st || !rule->report || !fh_rule_threshold(c->e, rule, st, (fh_level) l, &t) ||
                    !fh_program_same(&t.quantity, rule->report) || !op_name(t.op))
                        continue;
                fh_buf_printf(b, "%s\"%s\":{\"op\":\"%s\",\"value\":", first ? "" : ",",
                              fh_level_name((fh_level) l), op_name(t.op));
                fh_buf_json_number(b, t.bound);
                fh_buf_putc(b, '}');
                first = false;
        }
        fh_buf_putc(b, '}');
}

/* {"red":"sum(rain_mm, 3h) >= 100",...}: each tier's condition as written. */
static void put_conditions(const fh_rule *rule, fh_buf *b) {
        bool first = true;

        fh_buf_putc(b, '{');
        for (int l = FH_LEVEL_RED; l >= FH_LEVEL_BLUE; l--) {
                const fh_program *p = rule->levels[l];
                if (!p || !p->source)
                        continue;
                fh_buf_printf(b, "%s\"%s\":", first ? "" : ",", fh_level_name((fh_level) l));
                fh_buf_json_string(b, p->source, strlen(p->source));
                first = false;
        }
        fh_buf_putc(b, '}');
}

static const fh_rule *find_rule(const fh_console *c, const char *id, size_t len) {
        for (size_t i = 0; i < c->rs->n_rules; i++)
                if (strlen(c->rs->rules[i].id) == len && !memcmp(c->rs->rules[i].id, id, len))
                        return &c->rs->rules[i];
        return NULL;
}

static void put_attr(fh_buf *b, const fh_console *c, const fh_station *st, const char *name) {
        const fh_attr *a = fh_station_attr(st, fh_registry_column(c->reg, name, strlen(name)));
        fh_buf_printf(b, ",\"%s\":", name);
        if (!a)
                fh_buf_puts(b, "null");
        else if (a->is_number)
                fh_buf_json_number(b, a->num);
        else
                fh_buf_json_string(b, a->str, a->len);
}

static void put_station(fh_buf *b, const fh_console *c, const fh_station *st) {
        fh_buf_puts(b, "{\"id\":");
        fh_buf_json_string(b, st->id, st->id_len);
        fh_buf_puts(b, ",\"name\":");
        fh_buf_json_string(b, st->name, st->name_len);
        fh_buf_printf(b, ",\"kind\":\"%s\"", fh_kind_name(st->kind));
        put_attr(b, c, st, "town");
        put_attr(b, c, st, "basin");
        put_attr(b, c, st, "lat");
        put_attr(b, c, st, "lon");
        fh_buf_putc(b, '}');
}

static enum MHD_Result api_stations(fh_console *c, struct MHD_Connection *conn) {
        fh_buf b = FH_BUF_NULL;
        fh_buf_putc(&b, '[');
        for (size_t i = 0; i < c->reg->n_stations; i++) {
                if (i)
                        fh_buf_putc(&b, ',');
                put_station(&b, c, &c->reg->stations[i]);
        }
        fh_buf_putc(&b, ']');
        enum MHD_Result r = json(conn, MHD_HTTP_OK, &b);
        fh_buf_free(&b);
        return r;
}

static void put_rule(fh_buf *b, const fh_rule *rule) {
        fh_buf_puts(b, "{\"id\":");
        fh_buf_json_string(b, rule->id, strlen(rule->id));
        fh_buf_puts(b, ",\"title\":");
        if (rule->title)
                fh_buf_json_string(b, rule->title, strlen(rule->title));
        else
                fh_buf_json_string(b, rule->id, strlen(rule->id));
        fh_buf_printf(b, ",\"kind\":\"%s\",\"unit\":", fh_kind_name(rule->kind));
        if (rule->unit)
                fh_buf_json_string(b, rule->unit, strlen(rule->unit));
        else
                fh_buf_puts(b, "null");
        fh_buf_putc(b, '}');
}

static enum MHD_Result api_rules(fh_console *c, struct MHD_Connection *conn) {
        fh_buf b = FH_BUF_NULL;
        fh_buf_putc(&b, '{');
        for (size_t i = 0; i < c->rs->n_rules; i++) {
                const fh_rule *rule = &c->rs->rules[i];
                if (i)
                        fh_buf_putc(&b, ',');
                fh_buf_json_string(&b, rule->id, strlen(rule->id));
                fh_buf_putc(&b, ':');
                put_rule(&b, rule);
        }
        fh_buf_putc(&b, '}');
        enum MHD_Result r = json(conn, MHD_HTTP_OK, &b);
        fh_buf_free(&b);
        return r;
}

/* The alert_id of an event as the daemon writes it: the first member, an id
 * of [A-Za-z0-9._:-] (rule and sensor ids) and digits, so no escapes. */
static bool event_alert_id(const char *json, char *out, size_t n) {
        const char *p = strstr(json, "\"alert_id\":\"");
        if (!p)
                return false;
        p += 12;
        size_t len = strcspn(p, "\"\\");
        if (p[len] != '"' || len == 0 || len >= n)
                return false;
        memcpy(out, p, len);
        out[len] = '\0';
        return true;
}

static void silence_key(const fh_console *c, const char *scope, const char *id, char *out, size_t n) {
        snprintf(out, n, "%s:silence:%s:%s", c->cfg->channel, scope, id);
}

static void put_reply_or_null(fh_buf *b, const redisReply *r) {
        if (r && r->type == REDIS_REPLY_STRING)
                fh_buf_append(b, r->str, r->len);
        else
                fh_buf_puts(b, "null");
}

static enum MHD_Result api_active(fh_console *c, struct MHD_Connection *conn) {
        redisReply *all = redis_cmd(c, 2, "HGETALL", c->cfg->active_hash);
        if (!reply_ok(all) || all->type != REDIS_REPLY_ARRAY) {
                freeReplyObject(all);
                return json_error(conn, MHD_HTTP_SERVICE_UNAVAILABLE, "Redis 不可用");
        }
        size_t n = all->elements / 2;
        /* One MGET for every entry's acknowledgement and both silences. */
        const char **argv = fh_calloc(1 + 3 * n, sizeof(*argv));
        size_t *lens = fh_calloc(1 + 3 * n, sizeof(*lens));
        char **keys = fh_calloc(3 * n + 1, sizeof(*keys));
        argv[0] = "MGET";
        lens[0] = 4;
        for (size_t i = 0; i < n; i++) {
                const char *field = all->element[2 * i]->str;
                const char *colon = strchr(field, ':');
                char id[640], k[1024];
                if (!event_alert_id(all->element[2 * i + 1]->str, id, sizeof(id)))
                        id[0] = '\0';
                snprintf(k, sizeof(k), "%sack:%s", c->cfg->key_prefix, id);
                keys[3 * i] = fh_strdup(k);
                silence_key(c, "sensor", colon ? colon + 1 : "", k, sizeof(k));
                keys[3 * i + 1] = fh_strdup(k);
                snprintf(k, sizeof(k), "%s:silence:rule:%.*s", c->cfg->channel,
                         colon ? (int) (colon - field) : 0, field);
                keys[3 * i + 2] = fh_strdup(k);
                for (int j = 0; j < 3; j++) {
                        argv[1 + 3 * i + j] = keys[3 * i + j];
                        lens[1 + 3 * i + j] = strlen(keys[3 * i + j]);
                }
        }
        redisReply *got = n ? rcmd_argv(c, (int) (1 + 3 * n), argv, lens) : NULL;
        bool have = got && got->type == REDIS_REPLY_ARRAY && got->elements == 3 * n;

        fh_buf b = FH_BUF_NULL;
        fh_buf_putc(&b, '[');
        for (size_t i = 0; i < n; i++) {
                const char *field = all->element[2 * i]->str;
                const char *colon = strchr(field, ':');
                const fh_rule *rule = colon ? find_rule(c, field, (size_t) (colon - field)) : NULL;
                const fh_station *st = colon ? fh_registry_find(c->reg, colon + 1, strlen(colon + 1)) : NULL;
                if (i)
                        fh_buf_putc(&b, ',');
                fh_buf_puts(&b, "{\"field\":");
                fh_buf_json_string(&b, field, all->element[2 * i]->len);
                fh_buf_puts(&b, ",\"event\":");
                fh_buf_append(&b, all->element[2 * i + 1]->str, all->element[2 * i + 1]->len);
                fh_buf_puts(&b, ",\"unit\":");
                if (rule && rule->unit)
                        fh_buf_json_string(&b, rule->unit, strlen(rule->unit));
                else
                        fh_buf_puts(&b, "null");
                fh_buf_puts(&b, ",\"thresholds\":");
                if (rule)
                        put_thresholds(c, rule, st, &b);
                else
                        fh_buf_puts(&b, "{}");
                fh_buf_puts(&b, ",\"conditions\":");
                if (rule)
                        put_conditions(rule, &b);
                else
                        fh_buf_puts(&b, "{}");
                fh_buf_puts(&b, ",\"ack\":");
                put_reply_or_null(&b, have ? got->element[3 * i] : NULL);
                fh_buf_puts(&b, ",\"silenced\":");
                const redisReply *s = have ? got->element[3 * i + 1] : NULL;
                if (!s || s->type != REDIS_REPLY_STRING)
                        s = have ? got->element[3 * i + 2] : NULL;
                put_reply_or_null(&b, s);
                fh_buf_putc(&b, '}');
        }
        fh_buf_putc(&b, ']');
        for (size_t i = 0; i < 3 * n; i++)
                free(keys[i]);
        free(keys);
        free(argv);
        free(lens);
        freeReplyObject(got);
        freeReplyObject(all);
        enum MHD_Result r = json(conn, MHD_HTTP_OK, &b);
        fh_buf_free(&b);
        return r;
}

static void silences_index(const fh_console *c, char *out, size_t n) {
        snprintf(out, n, "%ssilences", c->cfg->key_prefix);
}

static enum MHD_Result api_silences(fh_console *c, struct MHD_Connection *conn) {
        char idx[256], now[32];
        silences_index(c, idx, sizeof(idx));
        snprintf(now, sizeof(now), "%lld", (long long) fh_console_now_ms());
        freeReplyObject(redis_cmd(c, 4, "ZREMRANGEBYSCORE", idx, "-inf", now));
        redisReply *keys = redis_cmd(c, 4, "ZRANGE", idx, "0", "-1");
        if (!reply_ok(keys) || keys->type != REDIS_REPLY_ARRAY) {
                freeReplyObject(keys);
                return json_error(conn, MHD_HTTP_SERVICE_UNAVAILABLE, "Redis 不可用");
        }
        fh_buf b = FH_BUF_NULL;
        fh_buf_putc(&b, '[');
        bool first = true;
        for (size_t i = 0; i < keys->elements; i++) {
                redisReply *v = redis_cmd(c, 2, "GET", keys->element[i]->str);
                if (v && v->type == REDIS_REPLY_STRING) {
                        if (!first)
                                fh_buf_putc(&b, ',');
                        fh_buf_append(&b, v->str, v->len);
                        first = false;
                }
                freeReplyObject(v);
        }
        fh_buf_putc(&b, ']');
        freeReplyObject(keys);
        enum MHD_Result r = json(conn, MHD_HTTP_OK, &b);
        fh_buf_free(&b);
        return r;
}

static enum MHD_Result api_station(fh_console *c, struct MHD_Connection *conn) {
        const char *id = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "id");
        const fh_station *st = id ? fh_registry_find(c->reg, id, strlen(id)) : NULL;
        if (!st)
                return json_error(conn, MHD_HTTP_NOT_FOUND, "没有这个站点");

        fh_buf b = FH_BUF_NULL;
        fh_buf_puts(&b, "{\"station\":");
        put_station(&b, c, st);
        fh_buf_puts(&b, ",\"rules\":[");
        bool first = true;
        for (size_t i = 0; i < c->rs->n_rules; i++) {
                const fh_rule *rule = &c->rs->rules[i];
                if (rule->kind != st->kind)
                        continue;
                fh_buf_puts(&b, first ? "{\"rule\":" : ",{\"rule\":");
                put_rule(&b, rule);
                fh_buf_puts(&b, ",\"thresholds\":");
                put_thresholds(c, rule, st, &b);
                fh_buf_puts(&b, ",\"conditions\":");
                put_conditions(rule, &b);
                fh_buf_putc(&b, '}');
                first = false;
        }
        /* The stream's entry ids are the milliseconds Redis added them at:
         * the last 24 h of events, newest first. */
        char from[32], needle[128];
        snprintf(from, sizeof(from), "%lld", (long long) (fh_console_now_ms() - HISTORY_MS));
        snprintf(needle, sizeof(needle), "\"sensor\":\"%s\"", st->id);
        fh_buf_puts(&b, "],\"history\":[");
        redisReply *rep = redis_cmd(c, 6, "XREVRANGE", c->cfg->stream, "+", from, "COUNT", "20000");
        first = true;
        for (size_t i = 0; rep && rep->type == REDIS_REPLY_ARRAY && i < rep->elements; i++) {
                redisReply *kv = rep->element[i]->element[1];
                for (size_t j = 0; j + 1 < kv->elements; j += 2) {
                        if (strcmp(kv->element[j]->str, "alert") || !strstr(kv->element[j + 1]->str, needle))
                                continue;
                        if (!first)
                                fh_buf_putc(&b, ',');
                        fh_buf_append(&b, kv->element[j + 1]->str, kv->element[j + 1]->len);
                        first = false;
                }
        }
        freeReplyObject(rep);
        fh_buf_puts(&b, "]}");
        enum MHD_Result r = json(conn, MHD_HTTP_OK, &b);
        fh_buf_free(&b);
        return r;
}

static void put_actor(fh_buf *b, const who *w, int64_t now, const char *note) {
        fh_buf_puts(b, "\"user\":");
        fh_buf_json_string(b, w->user, strlen(w->user));
        fh_buf_printf(b, ",\"ts\":%lld,\"note\":", (long long) now);
        fh_buf_json_string(b, note, strlen(note));
}

static enum MHD_Result api_ack(fh_console *c, struct MHD_Connection *conn, const who *w, const fh_buf *body) {
        char id[640], note[NOTE_MAX * 4], key[1024];
        if (!fh_console_form_get(body->data, body->len, "alert_id", id, sizeof(id)) || !*id)
                return json_error(conn, MHD_HTTP_BAD_REQUEST, "缺少 alert_id");
        if (!fh_console_form_get(body->data, body->len, "note", note, sizeof(note)))
                note[0] = '\0';
        int64_t now = fh_console_now_ms();
        fh_buf b = FH_BUF_NULL;
        fh_buf_puts(&b, "{\"alert_id\":");
        fh_buf_json_string(&b, id, strlen(id));
        fh_buf_putc(&b, ',');
        put_actor(&b, w, now, note);
        fh_buf_putc(&b, '}');
        snprintf(key, sizeof(key), "%sack:%s", c->cfg->key_prefix, id);
        const char *argv[] = { "SET", key, b.data, "EX", "2592000" };
        size_t lens[] = { 3, strlen(key), b.len, 2, 7 };
        redisReply *rep = rcmd_argv(c, 5, argv, lens);
        bool ok = reply_ok(rep);
        freeReplyObject(rep);
        enum MHD_Result r;
        if (ok) {
                publish(c, "change", b.data);
                r = json(conn, MHD_HTTP_OK, &b);
        } else
                r = json_error(conn, MHD_HTTP_SERVICE_UNAVAILABLE, "Redis 不可用");
        fh_buf_free(&b);
        return r;
}

static enum MHD_Result api_silence(fh_console *c, struct MHD_Connection *conn, const who *w, const fh_buf *body,
                                   bool lift) {
        char scope[16], id[128], minutes[16], note[NOTE_MAX * 4], key[512], idx[256];
        if (!fh_console_form_get(body->data, body->len, "scope", scope, sizeof(scope)) ||
            (strcmp(scope, "sensor") && strcmp(scope, "rule")))
                return json_error(conn, MHD_HTTP_BAD_REQUEST, "scope 必须是 sensor 或 rule");
        if (!fh_console_form_get(body->data, body->len, "id", id, sizeof(id)) ||
            (!strcmp(scope, "sensor") ? !fh_registry_find(c->reg, id, strlen(id)) : !find_rule(c, id, strlen(id))))
                return json_error(conn, MHD_HTTP_BAD_REQUEST, "没有这个站点或规则");
        silence_key(c, scope, id, key, sizeof(key));
        silences_index(c, idx, sizeof(idx));
        if (lift) {
                redisReply *rep = redis_cmd(c, 2, "DEL", key);
                bool ok = reply_ok(rep);
                freeReplyObject(rep);
                freeReplyObject(redis_cmd(c, 3, "ZREM", idx, key));
                if (!ok)
                        return json_error(conn, MHD_HTTP_SERVICE_UNAVAILABLE, "Redis 不可用");
                publish(c, "change", "{}");
                return respond(conn, MHD_HTTP_OK, "application/json", "{}", 2, false);
        }
        char *end;
        long m = fh_console_form_get(body->data, body->len, "minutes", minutes, sizeof(minutes))
                         ? strtol(minutes, &end, 10) : -1;
        if (m < 1 || m > SILENCE_MAX_MIN || *end)
                return json_error(conn, MHD_HTTP_BAD_REQUEST, "时长须为 1 到 43200 分钟");
        if (!fh_console_form_get(body->data, body->len, "note", note, sizeof(note)))
                note[0] = '\0';
        int64_t now = fh_console_now_ms(), until = now + m * 60000LL;
        fh_buf b = FH_BUF_NULL;
        fh_buf_printf(&b, "{\"scope\":\"%s\",\"id\":", scope);
        fh_buf_json_string(&b, id, strlen(id));
        fh_buf_printf(&b, ",\"until\":%lld,", (long long) until);
        put_actor(&b, w, now, note);
        fh_buf_putc(&b, '}');
        char px[32], score[32];
        snprintf(px, sizeof(px), "%lld", m * 60000LL);
        snprintf(score, sizeof(score), "%lld", (long long) until);
        const char *argv[] = { "SET", key, b.data, "PX", px };
        size_t lens[] = { 3, strlen(key), b.len, 2, strlen(px) };
        redisReply *rep = rcmd_argv(c, 5, argv, lens);
        bool ok = reply_ok(rep);
        freeReplyObject(rep);
        freeReplyObject(redis_cmd(c, 4, "ZADD", idx, score, key));
        enum MHD_Result r;
        if (ok) {
                publish(c, "change", b.data);
                r = json(conn, MHD_HTTP_OK, &b);
        } else
                r = json_error(conn, MHD_HTTP_SERVICE_UNAVAILABLE, "Redis 不可用");
        fh_buf_free(&b);
        return r;
}

/* The client's address: the peer's, or what the trusted reverse-proxy
 * header console.client_header says (an address, nothing else). */
static void client_addr(const fh_console *c, struct MHD_Connection *conn, char *out, size_t n) {
        if (c->cfg->client_header) {
                const char *h = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, c->cfg->client_header);
                size_t len = h ? strlen(h) : 0;
                if (len && len < n && len < INET6_ADDRSTRLEN && strspn(h, "0123456789abcdefABCDEF.:") == len) {
                        memcpy(out, h, len + 1);
                        return;
                }
        }
        const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
        const struct sockaddr *sa = ci ? ci->client_addr : NULL;
        snprintf(out, n, "?");
        if (sa && sa->sa_family == AF_INET)
                inet_ntop(AF_INET, &((const struct sockaddr_in *) sa)->sin_addr, out, (socklen_t) n);
        else if (sa && sa->sa_family == AF_INET6)
                inet_ntop(AF_INET6, &((const struct sockaddr_in6 *) sa)->sin6_addr, out, (socklen_t) n);
}

static void known_key(const fh_console *c, const char *name, const char *addr, char *out, size_t n) {
        snprintf(out, n, "%slogin_ok:%s:%s", c->cfg->key_prefix, name, addr);
}

static enum MHD_Result too_many(struct MHD_Connection *conn, int64_t wait_ms) {
        long long s = (wait_ms + 999) / 1000;
        char msg[128], retry[32];
        if (s < 120)
                snprintf(msg, sizeof(msg), "登录失败次数过多，请 %lld 秒后再试", s);
        else
                snprintf(msg, sizeof(msg), "登录失败次数过多，请 %lld 分钟后再试", (s + 59) / 60);
        fh_buf b = FH_BUF_NULL;
        fh_buf_puts(&b, "{\"error\":");
        fh_buf_json_string(&b, msg, strlen(msg));
        fh_buf_printf(&b, ",\"retry_after_s\":%lld}", s);
        struct MHD_Response *r = MHD_create_response_from_buffer(b.len, b.data, MHD_RESPMEM_MUST_COPY);
        fh_buf_free(&b);
        if (!r)
                return MHD_NO;
        snprintf(retry, sizeof(retry), "%lld", s);
        MHD_add_response_header(r, "Retry-After", retry);
        MHD_add_response_header(r, "Content-Type", "application/json; charset=utf-8");
        MHD_add_response_header(r, "Cache-Control", "no-store");
        enum MHD_Result ret = MHD_queue_response(conn, 429, r);
        MHD_destroy_response(r);
        return ret;
}

static enum MHD_Result api_login(fh_console *c, struct MHD_Connection *conn, const fh_buf *body) {
        char name[128], password[512], key[256], token[65], cookie[256], addr[INET6_ADDRSTRLEN + 1];
        char hash[512], known_k[512];
        unsigned char raw[32];
        enum role role = ROLE_NONE;

        if (!fh_console_form_get(body->data, body->len, "user", name, sizeof(name)) || !*name ||
            !fh_console_form_get(body->data, body->len, "password", password, sizeof(password)))
                return json_error(conn, MHD_HTTP_BAD_REQUEST, "请填写用户名和密码");
        client_addr(c, conn, addr, sizeof(addr));
        users_check(c, true);
        known_key(c, name, addr, known_k, sizeof(known_k));
        redisReply *rep = redis_cmd(c, 2, "EXISTS", known_k);
        bool known = rep && rep->type == REDIS_REPLY_INTEGER && rep->integer > 0;
        freeReplyObject(rep);
        /* One password check at a time: parallel attempts cannot slip
         * past a lock before their failures are counted, and a flood of
         * them costs one core of hashing, not all of the machine's. */
        pthread_mutex_lock(&c->login_lock);
        int64_t wait = fh_login_guard_wait(c->guard, name, addr, known, fh_console_now_ms());
        if (wait > 0) {
                pthread_mutex_unlock(&c->login_lock);
                return too_many(conn, wait);
        }
        bool found = lookup_user(c, name, hash, sizeof(hash), &role);
        /* An unknown name costs a hash too: the time says nothing. */
        bool ok = check_password(found ? hash : c->dummy_hash, password) && found;
        memset(password, 0, sizeof(password));
        const char *what = NULL;
        int64_t lock = 0;
        if (ok)
                fh_login_guard_ok(c->guard, name, addr, fh_console_now_ms());
        else
                lock = fh_login_guard_fail(c->guard, name, addr, fh_console_now_ms(), &what);
        pthread_mutex_unlock(&c->login_lock);
        if (!ok) {
                if (lock > 0) {
                        fh_console_log(LOG_WARNING, "login locked after repeated failures user=%s addr=%s scope=%s lock_s=%lld",
                                       name, addr, what, (long long) ((lock + 999) / 1000));
                        return too_many(conn, lock);
                }
                fh_console_log(LOG_NOTICE, "login failed user=%s addr=%s", name, addr);
                return json_error(conn, MHD_HTTP_UNAUTHORIZED, "用户名或密码错误");
        }
        freeReplyObject(redis_cmd(c, 5, "SET", known_k, "1", "EX", "2592000"));
        if (getrandom(raw, sizeof(raw), 0) != (ssize_t) sizeof(raw))
                return json_error(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, "no randomness");
        for (size_t i = 0; i < sizeof(raw); i++)
                snprintf(token + 2 * i, 3, "%02x", raw[i]);
        session_key(c, token, key, sizeof(key));
        fh_buf v = FH_BUF_NULL;
        fh_buf_printf(&v, "%c %s", role == ROLE_OPERATOR ? 'o' : 'v', name);
        char ttl[32], set[256];
        snprintf(ttl, sizeof(ttl), "%lld", (long long) (c->cfg->session_ttl_ms / 1000));
        rep = redis_cmd(c, 5, "SET", key, v.data, "EX", ttl);
        ok = reply_ok(rep);
        freeReplyObject(rep);
        fh_buf_free(&v);
        if (!ok)
                return json_error(conn, MHD_HTTP_SERVICE_UNAVAILABLE, "Redis 不可用");
        /* So that removing the user from the file can end this session. */
        user_sessions_key(c, name, set, sizeof(set));
        freeReplyObject(redis_cmd(c, 3, "SADD", set, token));
        freeReplyObject(redis_cmd(c, 3, "EXPIRE", set, ttl));
        fh_console_log(LOG_INFO, "login user=%s addr=%s role=%s", name, addr,
                       role == ROLE_OPERATOR ? "operator" : "viewer");

        fh_buf b = FH_BUF_NULL;
        fh_buf_puts(&b, "{\"user\":");
        fh_buf_json_string(&b, name, strlen(name));
        fh_buf_printf(&b, ",\"role\":\"%s\"}", role == ROLE_OPERATOR ? "operator" : "viewer");
        struct MHD_Response *r = MHD_create_response_from_buffer(b.len, b.data, MHD_RESPMEM_MUST_COPY);
        fh_buf_free(&b);
        if (!r)
                return MHD_NO;
        snprintf(cookie, sizeof(cookie), "fh_session=%s; HttpOnly; SameSite=Strict; Path=/; Max-Age=%s", token, ttl);
        MHD_add_response_header(r, "Set-Cookie", cookie);
        MHD_add_response_header(r, "Content-Type", "application/json; charset=utf-8");
        MHD_add_response_header(r, "Cache-Control", "no-store");
        enum MHD_Result ret = MHD_queue_response(conn, MHD_HTTP_OK, r);
        MHD_destroy_response(r);
        return ret;
}

static enum MHD_Result api_logout(fh_console *c, struct MHD_Connection *conn) {
        const char *tok = MHD_lookup_connection_value(conn, MHD_COOKIE_KIND, "fh_session");
        if (tok && strlen(tok) == 64 && strspn(tok, "0123456789abcdef") == 64) {
                char key[256];
                session_key(c, tok, key, sizeof(key));
                freeReplyObject(redis_cmd(c, 2, "DEL", key));
        }
        struct MHD_Response *r = MHD_create_response_from_buffer(2, (void *) "{}", MHD_RESPMEM_PERSISTENT);
        if (!r)
                return MHD_NO;
        MHD_add_response_header(r, "Set-Cookie", "fh_session=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0");
        MHD_add_response_header(r, "Content-Type", "application/json");
        enum MHD_Result ret = MHD_queue_response(conn, MHD_HTTP_OK, r);
        MHD_destroy_response(r);
        return ret;
}

static enum MHD_Result api_me(fh_console *c, struct MHD_Connection *conn, const who *w) {
        if (w->role == ROLE_NONE)
                return json_error(conn, MHD_HTTP_UNAUTHORIZED, "请登录");
        fh_buf b = FH_BUF_NULL;
        fh_buf_puts(&b, "{\"user\":");
        fh_buf_json_string(&b, w->user, strlen(w->user));
        fh_buf_printf(&b, ",\"role\":\"%s\",\"anonymous\":%s,\"tz_offset_min\":%d}",
                      w->role == ROLE_OPERATOR ? "operator" : "viewer", w->anonymous ? "true" : "false",
                      c->cfg->tz_offset_min);
        enum MHD_Result r = json(conn, MHD_HTTP_OK, &b);
        fh_buf_free(&b);
        return r;
}

static enum MHD_Result api_events(fh_console *c, struct MHD_Connection *conn) {
        sse *s = fh_calloc(1, sizeof(*s));
        s->c = c;
        pthread_mutex_lock(&c->lock);
        s->seq = c->seq;
        pthread_mutex_unlock(&c->lock);
        /* A first line at once, so the page knows it is connected. */
        fh_buf_puts(&s->out, "retry: 1000\nevent: hello\ndata: {}\n\n");
        struct MHD_Response *r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, sse_read, s, sse_free);
        if (!r) {
                sse_free(s);
                return MHD_NO;
        }
        MHD_add_response_header(r, "Content-Type", "text/event-stream; charset=utf-8");
        MHD_add_response_header(r, "Cache-Control", "no-store");
        enum MHD_Result ret = MHD_queue_response(conn, MHD_HTTP_OK, r);
        MHD_destroy_response(r);
        return ret;
}

/* ---- dispatch ------------------------------------------------------------- */

typedef struct request {
        fh_buf body;
        bool too_big;
} request;

static void request_done(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe) {
        request *rq = *con_cls;
        if (rq) {
                fh_buf_free(&rq->body);
                free(rq);
                *con_cls = NULL;
        }
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                              const char *version, const char *upload, size_t *upload_size, void **con_cls) {
        fh_console *c = cls;
        request *rq = *con_cls;
        bool post = !strcmp(method, "POST");

        if (!rq) {
                rq = fh_calloc(1, sizeof(*rq));
                *con_cls = rq;
                return MHD_YES;
        }
        if (*upload_size) {
                if (rq->body.len + *upload_size > BODY_MAX)
                        rq->too_big = true;
                else
                        fh_buf_append(&rq->body, upload, *upload_size);
                *upload_size = 0;
                return MHD_YES;
        }
        fh_buf_putc(&rq->body, '\0');
        rq->body.len--;
        if (rq->too_big)
                return json_error(conn, 413, "请求太大");

        if (!post && strcmp(method, "GET") && strcmp(method, "HEAD"))
                return json_error(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "不支持的方法");
        if (strncmp(url, "/api/", 5)) {
                const fh_console_asset *a = fh_console_asset_find(url);
                if (!a || post)
                        return respond(conn, MHD_HTTP_NOT_FOUND, "text/plain; charset=utf-8", "找不到\n", 10, false);
                return respond(conn, MHD_HTTP_OK, a->type, a->data, a->len, false);
        }
        /* A custom header on every POST: a form on another site cannot
         * send one, so neither a cookie nor a proxy's login can be used
         * from there (besides SameSite=Strict). */
        if (post && !MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "X-Fenghuo"))
                return json_error(conn, MHD_HTTP_FORBIDDEN, "缺少 X-Fenghuo 请求头");
        if (post && !strcmp(url, "/api/login"))
                return api_login(c, conn, &rq->body);
        if (post && !strcmp(url, "/api/logout"))
                return api_logout(c, conn);

        who w;
        identify(c, conn, &w);
        if (!strcmp(url, "/api/me"))
                return api_me(c, conn, &w);
        if (w.role == ROLE_NONE)
                return json_error(conn, MHD_HTTP_UNAUTHORIZED, "请登录");
        if (!post) {
                if (!strcmp(url, "/api/stations"))
                        return api_stations(c, conn);
                if (!strcmp(url, "/api/rules"))
                        return api_rules(c, conn);
                if (!strcmp(url, "/api/active"))
                        return api_active(c, conn);
                if (!strcmp(url, "/api/silences"))
                        return api_silences(c, conn);
                if (!strcmp(url, "/api/station"))
                        return api_station(c, conn);
                if (!strcmp(url, "/api/events"))
                        return api_events(c, conn);
                return json_error(conn, MHD_HTTP_NOT_FOUND, "没有这个接口");
        }
        if (w.role != ROLE_OPERATOR)
                return json_error(conn, MHD_HTTP_FORBIDDEN, "只读用户不能操作");
        if (!strcmp(url, "/api/ack"))
                return api_ack(c, conn, &w, &rq->body);
        if (!strcmp(url, "/api/silence"))
                return api_silence(c, conn, &w, &rq->body, false);
        if (!strcmp(url, "/api/unsilence"))
                return api_silence(c, conn, &w, &rq->body, true);
        return json_error(conn, MHD_HTTP_NOT_FOUND, "没有这个接口");
}

/* ---- life ----------------------------------------------------------------- */

int fh_console_start(fh_console **ret, const fh_console_config *cfg, const fh_engine *e, char *err,
                     size_t err_len) {
        fh_console *c = fh_calloc(1, sizeof(*c));
        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t) cfg->port) };
        int rc;

        c->cfg = cfg;
        c->e = e;
        c->reg = fh_engine_registry(e);
        c->rs = fh_engine_rules(e);
        pthread_mutex_init(&c->rlock, NULL);
        pthread_mutex_init(&c->lock, NULL);
        pthread_mutex_init(&c->ulock, NULL);
        pthread_mutex_init(&c->reload_lock, NULL);
        pthread_mutex_init(&c->login_lock, NULL);
        pthread_cond_init(&c->cond, NULL);
        c->guard = fh_login_guard_new(cfg->login_lock_ms);
        c->dummy_hash = fh_console_hash_password("not a password");
        if (!c->dummy_hash)
                c->dummy_hash = fh_strdup("*");
        if (cfg->users_file) {
                if (stat(cfg->users_file, &c->users_st) == 0)
                        c->users_st_valid = true;
                if ((rc = parse_users(cfg->users_file, &c->users, &c->n_users, err, err_len)) < 0) {
                        fh_console_stop(c);
                        return rc;
                }
        }
        if (inet_pton(AF_INET, cfg->listen, &sa.sin_addr) != 1) {
                snprintf(err, err_len, "console.listen must be an IPv4 address, not '%s'", cfg->listen);
                fh_console_stop(c);
                return -EINVAL;
        }
        if ((rc = pthread_create(&c->follower, NULL, follow, c)) != 0) {
                snprintf(err, err_len, "cannot start a thread: %s", strerror(rc));
                fh_console_stop(c);
                return -rc;
        }
        c->follower_started = true;
        c->mhd = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION |
                                  MHD_USE_ERROR_LOG,
                                  0, NULL, NULL, handle, c,
                                  MHD_OPTION_SOCK_ADDR, (struct sockaddr *) &sa,
                                  MHD_OPTION_CONNECTION_LIMIT, (unsigned) 256,
                                  MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned) 32,
                                  MHD_OPTION_NOTIFY_COMPLETED, request_done, c,
                                  MHD_OPTION_END);
        if (!c->mhd) {
                snprintf(err, err_len, "cannot listen on %s:%d", cfg->listen, cfg->port);
                fh_console_stop(c);
                return -EADDRINUSE;
        }
        if (cfg->ack_timeout_ms > 0 && (rc = fh_escalator_start(&c->escalator, c, cfg, err, err_len)) < 0) {
                fh_console_stop(c);
                return rc;
        }
        const union MHD_DaemonInfo *info = MHD_get_daemon_info(c->mhd, MHD_DAEMON_INFO_BIND_PORT);
        c->port = info ? info->port : cfg->port;
        *ret = c;
        return 0;
}

int fh_console_port(const fh_console *c) {
        return c->port;
}

fh_escalator *fh_console_escalator(fh_console *c) {
        return c->escalator;
}

void fh_console_stop(fh_console *c) {
        if (!c)
                return;
        /* First: its last deliveries still use the Redis connection. */
        fh_escalator_stop(c->escalator);
        pthread_mutex_lock(&c->lock);
        c->stopping = true;
        pthread_cond_broadcast(&c->cond);
        pthread_mutex_unlock(&c->lock);
        if (c->mhd)
                MHD_stop_daemon(c->mhd);
        if (c->follower_started)
                pthread_join(c->follower, NULL);
        for (size_t i = 0; i < RING; i++) {
                free(c->ring[i].event);
                free(c->ring[i].data);
        }
        free_users(c->users, c->n_users);
        free(c->dummy_hash);
        fh_login_guard_free(c->guard);
        redisFree(c->rc);
        pthread_cond_destroy(&c->cond);
        pthread_mutex_destroy(&c->lock);
        pthread_mutex_destroy(&c->ulock);
        pthread_mutex_destroy(&c->reload_lock);
        pthread_mutex_destroy(&c->login_lock);
        pthread_mutex_destroy(&c->rlock);
        free(c);
}
