#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "log.h"

/* Written once at start-up, before the loop runs; read-only after. */
static int log_max = LOG_INFO;
static int log_journal = -1;

void fh_log_init(int max_level) {
        log_max = max_level;
        log_journal = getenv("JOURNAL_STREAM") != NULL;
}

void fh_log(int level, const char *fmt, ...) {
        static const char *const names[] = { "emerg", "alert", "crit", "error", "warning", "notice", "info", "debug" };
        char line[2048];
        va_list ap;

        if (level > log_max)
                return;
        va_start(ap, fmt);
        vsnprintf(line, sizeof(line), fmt, ap);
        va_end(ap);
        if (log_journal > 0)
                fprintf(stderr, "<%d>%s\n", level, line);
        else
                fprintf(stderr, "fenghuo: %s: %s\n", names[level & 7], line);
}
