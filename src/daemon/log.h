/* Log lines on stderr. Under systemd (JOURNAL_STREAM set) each line starts
 * with "<N>" so journald records its priority; on a terminal it reads
 * "fenghuo: warning: ...". Messages are "what happened" then key=value
 * pairs, so they grep and parse alike. */
#ifndef FENGHUO_LOG_H
#define FENGHUO_LOG_H

#include <syslog.h>

void fh_log_init(int max_level);
__attribute__((format(printf, 2, 3)))
void fh_log(int level, const char *fmt, ...);

#define log_err(...)     fh_log(LOG_ERR, __VA_ARGS__)
#define log_warning(...) fh_log(LOG_WARNING, __VA_ARGS__)
#define log_notice(...)  fh_log(LOG_NOTICE, __VA_ARGS__)
#define log_info(...)    fh_log(LOG_INFO, __VA_ARGS__)
#define log_debug(...)   fh_log(LOG_DEBUG, __VA_ARGS__)

#endif
