/* Engine command-line options shared by replay, diff and plot. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fenghuo/timeutil.h"
#include "cli.h"

int fh_engine_option(fh_engine_config *cfg, int opt, const char *arg, const char *cmd) {
        switch (opt) {
        case 't':
                if (fh_duration_parse(arg, strlen(arg), &cfg->tick_ms) < 0 || cfg->tick_ms <= 0) {
                        fprintf(stderr, "fenghuo %s: --tick wants a positive duration like 60s, got '%s'\n", cmd, arg);
                        return -1;
                }
                return 0;
        case 'l':
                if (fh_duration_parse(arg, strlen(arg), &cfg->lateness_ms) < 0) {
                        fprintf(stderr, "fenghuo %s: --lateness wants a duration like 1h, got '%s'\n", cmd, arg);
                        return -1;
                }
                return 0;
        case 'M':
        case 'W': {
                char *end;
                errno = 0;
                unsigned long long n = strtoull(arg, &end, 10);
                if (errno || end == arg || *end || arg[0] == '-' || n > UINT32_MAX) {
                        fprintf(stderr, "fenghuo %s: --%s wants a count (0: no cap), got '%s'\n", cmd,
                                opt == 'M' ? "max-readings-per-minute" : "max-window-samples", arg);
                        return -1;
                }
                *(opt == 'M' ? &cfg->max_readings_per_minute : &cfg->max_window_samples) = (uint32_t) n;
                return 0;
        }
        default:
                if (fh_offset_parse(arg, strlen(arg), &cfg->tz_offset_min) < 0) {
                        fprintf(stderr, "fenghuo %s: --tz wants an offset like +08:00, got '%s'\n", cmd, arg);
                        return -1;
                }
                return 0;
        }
}
