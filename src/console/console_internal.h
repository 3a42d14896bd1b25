/* What the console's files share, and what its unit tests reach. */
#ifndef FENGHUO_CONSOLE_INTERNAL_H
#define FENGHUO_CONSOLE_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

int64_t fh_console_now_ms(void);
/* The value of name in an application/x-www-form-urlencoded body, decoded
 * into out (n bytes with the NUL); false when absent, too long, badly
 * escaped or holding a control character. */
bool fh_console_form_get(const char *body, size_t len, const char *name, char *out, size_t n);

#endif
