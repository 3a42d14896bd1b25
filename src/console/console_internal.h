/* What the console's files share, and what its unit tests reach. */
#ifndef FENGHUO_CONSOLE_INTERNAL_H
#define FENGHUO_CONSOLE_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <hiredis/hiredis.h>

#include "console.h"

int64_t fh_console_now_ms(void);
/* One command on the console's shared Redis connection (argc C strings);
 * NULL when Redis cannot be reached. The caller frees the reply. */
redisReply *fh_console_redis(fh_console *c, int argc, ...);

typedef struct fh_escalator fh_escalator;
int fh_escalator_start(fh_escalator **ret, fh_console *con, const fh_console_config *cfg, char *err,
                       size_t err_len);
/* Escalations Kafka has confirmed. */
unsigned long fh_escalator_produced(fh_escalator *e);
void fh_escalator_stop(fh_escalator *e);
/* The console's escalator, NULL when ack_timeout is 0 (tests). */
fh_escalator *fh_console_escalator(fh_console *c);
/* The value of name in an application/x-www-form-urlencoded body, decoded
 * into out (n bytes with the NUL); false when absent, too long, badly
 * escaped or holding a control character. */
bool fh_console_form_get(const char *body, size_t len, const char *name, char *out, size_t n);

/* One log line on standard error, "fenghuo console: warning: ..." (with
 * "<N>" for journald under systemd); prio is a syslog priority. */
__attribute__((format(printf, 2, 3)))
void fh_console_log(int prio, const char *fmt, ...);

/* The failed-login throttle (guard.c). Thread-safe. */
typedef struct fh_login_guard fh_login_guard;
fh_login_guard *fh_login_guard_new(int64_t lock_ms);
void fh_login_guard_free(fh_login_guard *g);
/* Milliseconds before user may try a password from addr; 0: now. known:
 * user has logged in from addr before, so only their own user+address
 * counter applies, not the user-wide or address-wide ones. */
int64_t fh_login_guard_wait(fh_login_guard *g, const char *user, const char *addr, bool known, int64_t now);
/* Counts a wrong password. The length of the longest lock it started (ms)
 * and which counter started it in *what ("user+address", "user",
 * "address"), or 0. */
int64_t fh_login_guard_fail(fh_login_guard *g, const char *user, const char *addr, int64_t now, const char **what);
/* A right password: the user+address counter starts again. */
void fh_login_guard_ok(fh_login_guard *g, const char *user, const char *addr, int64_t now);

#endif
