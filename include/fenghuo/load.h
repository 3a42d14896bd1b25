/* Loading an engine's inputs from files: the rules directory and the station
 * registry. Used by the command line, the daemon (start and reload) and the
 * console; errors go to diags, never to stderr. */
#ifndef FENGHUO_LOAD_H
#define FENGHUO_LOAD_H

#include <stddef.h>

#include "fenghuo/diag.h"
#include "fenghuo/engine.h"

/* Reads a whole file ("-" is standard input). 0, or a negative errno
 * (-EFBIG past max). */
#define FH_RULE_FILE_MAX    (4u << 20)
#define FH_STATION_FILE_MAX (512u << 20)
int fh_read_file(const char *path, size_t max, char **ret, size_t *ret_len);

/* Every *.yaml in dir, in name order. Problems go to diags. */
int fh_load_rules(const char *dir, fh_ruleset **ret, fh_diags *diags);
int fh_load_registry(const char *path, fh_registry **ret, fh_diags *diags);
/* Rules + registry + engine; on error diags say why. */
int fh_load_engine(const char *rules_dir, const char *stations, const fh_engine_config *cfg,
                   fh_engine **ret, fh_diags *diags);

/* "prog: " prefixed lines on stderr, errors then warnings, sorted. */
void fh_print_diags(const fh_diags *diags);

#endif
