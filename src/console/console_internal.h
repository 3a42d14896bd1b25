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

#endif
