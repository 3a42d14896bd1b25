/* SVG pictures of how rules behaved on a station (`fenghuo plot`, and
 * `fenghuo diff --plots`): the report value at each evaluation against
 * each tier's threshold, shaded where each tier was active, and the raw
 * readings below. Drawn here, as plain SVG: no script, no external service. */
#ifndef FENGHUO_PLOT_H
#define FENGHUO_PLOT_H

#include <stdio.h>

#include "fenghuo/engine.h"

#define FH_PLOT_PANELS_MAX 16

/* One panel: a rule of one of the rule sets replayed. */
typedef struct fh_plot_panel {
        size_t run;                /* index into the rule sets */
        const char *rule;          /* rule id */
} fh_plot_panel;

/* One picture: panels stacked over a shared time axis. */
typedef struct fh_plot_request {
        const char *sensor;
        int64_t from, to;          /* what to show; INT64_MIN / INT64_MAX: all the data */
        fh_plot_panel panels[FH_PLOT_PANELS_MAX];
        size_t n_panels;
        const char *path;          /* where to write it; NULL: standard output */
} fh_plot_request;

typedef struct fh_plot_runs {
        const char *const *rule_dirs;  /* one per rule set */
        const char *const *labels;     /* shown in each panel's title: "old", "new" */
        size_t n;
        const char *stations;
        const fh_engine_config *cfg;
        bool rewind_first;         /* the input was read before: start it over */
} fh_plot_runs;

/* Replays fd once per rule set (rewinding it between them), then writes each request's
 * SVG. 0, or -1 after saying why on stderr ("fenghuo CMD: ..."). */
int fh_plot_write(const char *cmd, int fd, const fh_plot_runs *runs, fh_plot_request *req, size_t n_req);

#endif
