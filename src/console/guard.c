/* Throttling of failed logins, counted in memory (docs/operations.md).
 *
 * Three counters see each wrong password: the user name with the client
 * address, the user name alone, the address alone. Each locks after its own
 * number of failures, for lock_ms, doubling with every further lock of the
 * same counter up to 15 × lock_ms, and starts again once it has been quiet
 * for an hour. While any lock that applies is on, the console answers 429
 * without trying the password, and such refusals count for nothing, so
 * hammering a lock does not lengthen it.
 *
 * What keeps an attacker from locking a person out: the user-wide and
 * address-wide locks do not apply from an address that person has logged
 * in from before ("known", kept by the caller); there only the user+address
 * counter applies, which someone elsewhere cannot move. An attacker spread
 * over many addresses can still hold the user-wide lock on a person's new
 * addresses, 15 minutes at a time, while getting no more than a few guesses
 * per lock; that is the price of stopping a distributed guess at all.
 *
 * Names are counted whether or not the users file has them, so a lock says
 * nothing about which names exist. The table is bounded: when full, the
 * entry idle longest goes, unlocked entries first. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fenghuo/buf.h"
#include "console_internal.h"

#define GUARD_MAX      4096
#define KEY_MAX        192
#define FORGET_MS      (3600 * 1000LL)
#define PAIR_FAILURES  5
#define USER_FAILURES  10
#define ADDR_FAILURES  20
#define LOCK_CAP       15

typedef struct entry {
        char key[KEY_MAX];     /* "p<addr> <user>", "u<user>", "a<addr>"; "" when free */
        unsigned fails;        /* since the last lock */
        unsigned locks;        /* locks in a row, for the doubling */
        int64_t locked_until;
        int64_t last;          /* last failure */
} entry;

struct fh_login_guard {
        pthread_mutex_t lock;
        int64_t lock_ms;
        size_t n;
        entry e[GUARD_MAX];
};

fh_login_guard *fh_login_guard_new(int64_t lock_ms) {
        fh_login_guard *g = fh_calloc(1, sizeof(*g));
        pthread_mutex_init(&g->lock, NULL);
        g->lock_ms = lock_ms > 0 ? lock_ms : 60000;
        return g;
}

void fh_login_guard_free(fh_login_guard *g) {
        if (!g)
                return;
        pthread_mutex_destroy(&g->lock);
        free(g);
}

static void make_key(char *out, char kind, const char *user, const char *addr) {
        if (kind == 'p')
                snprintf(out, KEY_MAX, "p%s %s", addr, user);
        else
                snprintf(out, KEY_MAX, "%c%s", kind, kind == 'u' ? user : addr);
}

static bool stale(const entry *x, int64_t now) {
        return x->locked_until <= now && now - x->last >= FORGET_MS;
}

static entry *find(fh_login_guard *g, const char *key, int64_t now) {
        for (size_t i = 0; i < g->n; i++)
                if (!strcmp(g->e[i].key, key)) {
                        if (stale(&g->e[i], now)) {
                                g->e[i] = g->e[--g->n];
                                return NULL;
                        }
                        return &g->e[i];
                }
        return NULL;
}

static entry *find_or_add(fh_login_guard *g, const char *key, int64_t now) {
        entry *x = find(g, key, now);
        if (x)
                return x;
        if (g->n == GUARD_MAX) {
                size_t victim = 0;
                for (size_t i = 1; i < g->n; i++) {
                        bool li = g->e[i].locked_until > now, lv = g->e[victim].locked_until > now;
                        if ((!li && lv) || (li == lv && g->e[i].last < g->e[victim].last))
                                victim = i;
                }
                g->e[victim] = g->e[--g->n];
        }
        x = &g->e[g->n++];
        *x = (entry) { 0 };
        snprintf(x->key, KEY_MAX, "%s", key);
        return x;
}

static int64_t remaining(fh_login_guard *g, char kind, const char *user, const char *addr, int64_t now) {
        char key[KEY_MAX];
        make_key(key, kind, user, addr);
        const entry *x = find(g, key, now);
        return x && x->locked_until > now ? x->locked_until - now : 0;
}

int64_t fh_login_guard_wait(fh_login_guard *g, const char *user, const char *addr, bool known, int64_t now) {
        pthread_mutex_lock(&g->lock);
        int64_t w = remaining(g, 'p', user, addr, now);
        if (!known) {
                w = FH_MAX(w, remaining(g, 'u', user, addr, now));
                w = FH_MAX(w, remaining(g, 'a', user, addr, now));
        }
        pthread_mutex_unlock(&g->lock);
        return w;
}

int64_t fh_login_guard_fail(fh_login_guard *g, const char *user, const char *addr, int64_t now, const char **what) {
        static const struct { char kind; unsigned max; const char *name; } counters[] = {
                { 'p', PAIR_FAILURES, "user+address" },
                { 'u', USER_FAILURES, "user" },
                { 'a', ADDR_FAILURES, "address" },
        };
        int64_t longest = 0;

        *what = NULL;
        pthread_mutex_lock(&g->lock);
        for (size_t i = 0; i < sizeof(counters) / sizeof(counters[0]); i++) {
                char key[KEY_MAX];
                make_key(key, counters[i].kind, user, addr);
                entry *x = find_or_add(g, key, now);
                x->last = now;
                if (++x->fails < counters[i].max)
                        continue;
                x->fails = 0;
                unsigned k = FH_MIN(x->locks, 4u);
                x->locks++;
                int64_t len = FH_MIN(g->lock_ms << k, LOCK_CAP * g->lock_ms);
                x->locked_until = FH_MAX(x->locked_until, now + len);
                if (len > longest) {
                        longest = len;
                        *what = counters[i].name;
                }
        }
        pthread_mutex_unlock(&g->lock);
        return longest;
}

void fh_login_guard_ok(fh_login_guard *g, const char *user, const char *addr, int64_t now) {
        char key[KEY_MAX];

        pthread_mutex_lock(&g->lock);
        make_key(key, 'p', user, addr);
        entry *x = find(g, key, now);
        if (x)
                *x = g->e[--g->n];
        /* The user-wide counter stays: someone elsewhere may be guessing. */
        pthread_mutex_unlock(&g->lock);
}
