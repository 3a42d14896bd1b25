#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fenghuo/buf.h"
#include "fenghuo/diag.h"

void fh_diags_add(fh_diags *d, fh_severity sev, const char *file, unsigned line, unsigned col,
                  const char *fmt, ...) {
        va_list ap;
        char *msg;
        int n;

        va_start(ap, fmt);
        n = vasprintf(&msg, fmt, ap);
        va_end(ap);
        if (n < 0)
                fh_oom();

        if (d->n == d->cap) {
                d->cap = d->cap ? d->cap * 2 : 16;
                d->v = fh_realloc(d->v, d->cap * sizeof(*d->v));
        }
        d->v[d->n++] = (fh_diag) {
                .severity = sev,
                .file = fh_strdup(file ? file : "-"),
                .line = line,
                .col = col,
                .msg = msg,
        };
        if (sev == FH_DIAG_ERROR)
                d->n_errors++;
}

static int diag_cmp(const void *a, const void *b) {
        const fh_diag *x = a, *y = b;
        int c = strcmp(x->file, y->file);

        if (c)
                return c;
        if (x->line != y->line)
                return x->line < y->line ? -1 : 1;
        if (x->col != y->col)
                return x->col < y->col ? -1 : 1;
        return 0;
}

void fh_diags_sort(fh_diags *d) {
        /* Insertion sort: stable, so two messages about one position keep
         * the order they were found in; lists are short. */
        for (size_t i = 1; i < d->n; i++) {
                fh_diag t = d->v[i];
                size_t j = i;

                while (j > 0 && diag_cmp(&d->v[j - 1], &t) > 0) {
                        d->v[j] = d->v[j - 1];
                        j--;
                }
                d->v[j] = t;
        }
}

size_t fh_diag_format(const fh_diag *d, char *buf, size_t n) {
        const char *sev = d->severity == FH_DIAG_WARNING ? "warning: " : "";
        int r;

        if (d->line == 0)
                r = snprintf(buf, n, "%s: %s%s", d->file, sev, d->msg);
        else if (d->col == 0)
                r = snprintf(buf, n, "%s:%u: %s%s", d->file, d->line, sev, d->msg);
        else
                r = snprintf(buf, n, "%s:%u:%u: %s%s", d->file, d->line, d->col, sev, d->msg);
        return r < 0 ? 0 : (size_t) r;
}

void fh_diags_clear(fh_diags *d) {
        for (size_t i = 0; i < d->n; i++) {
                free(d->v[i].file);
                free(d->v[i].msg);
        }
        free(d->v);
        *d = (fh_diags) FH_DIAGS_NULL;
}
