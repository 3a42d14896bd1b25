/* Diagnostics: every error the loaders find, with file, line and column, so
 * that `fenghuo check` can print all of them at once and the daemon can log
 * them on a refused reload. No I/O here: callers print. */
#ifndef FENGHUO_DIAG_H
#define FENGHUO_DIAG_H

#include "fenghuo/common.h"

typedef enum fh_severity { FH_DIAG_ERROR, FH_DIAG_WARNING } fh_severity;

typedef struct fh_diag {
        fh_severity severity;
        char *file;        /* owned */
        unsigned line;     /* 1-based; 0 when the error is about the whole file */
        unsigned col;      /* 1-based, counted in bytes; 0 when unknown */
        char *msg;         /* owned, no trailing newline */
} fh_diag;

typedef struct fh_diags {
        fh_diag *v;
        size_t n;
        size_t cap;
        size_t n_errors;
} fh_diags;

#define FH_DIAGS_NULL { NULL, 0, 0, 0 }

__attribute__((format(printf, 6, 7)))
void fh_diags_add(fh_diags *d, fh_severity sev, const char *file, unsigned line, unsigned col,
                  const char *fmt, ...);
#define fh_diags_error(d, file, line, col, ...) fh_diags_add((d), FH_DIAG_ERROR, (file), (line), (col), __VA_ARGS__)
#define fh_diags_warn(d, file, line, col, ...)  fh_diags_add((d), FH_DIAG_WARNING, (file), (line), (col), __VA_ARGS__)

/* Sort by file, line, column (stable), so output reads top to bottom. */
void fh_diags_sort(fh_diags *d);

/* "file:line:col: message" or "file:line:col: warning: message";
 * writes at most n bytes with NUL, returns the length it wanted. */
size_t fh_diag_format(const fh_diag *d, char *buf, size_t n);

void fh_diags_clear(fh_diags *d);

#endif
