#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fenghuo/buf.h"
#include "fenghuo/cap.h"
#include "fenghuo/reading.h"
#include "fenghuo/timeutil.h"
#include "cli.h"

typedef struct replay_out {
        const fh_engine *e;
        fh_buf line;
        FILE *f;
        /* --cap DIR: one CAP message per event, in DIR/<identifier>.xml */
        const char *cap_dir;
        fh_cap_config cap;
        bool cap_on;
        fh_buf cap_id, cap_xml, cap_path;
        int cap_err;             /* first write error, as -errno */
} replay_out;

static int write_file(const char *path, const char *data, size_t len) {
        FILE *f = fopen(path, "we");
        if (!f)
                return -errno;
        size_t n = fwrite(data, 1, len, f);
        int r = n == len ? 0 : -errno;
        if (fclose(f) != 0 && r == 0)
                r = -errno;
        return r < 0 ? r : 0;
}

static void write_cap(replay_out *o, const fh_alert *a) {
        fh_buf_reset(&o->cap_id);
        fh_buf_reset(&o->cap_xml);
        fh_cap_message(o->e, &o->cap, a, &o->cap_id, &o->cap_xml);
        if (o->cap_err)
                return;
        fh_buf_reset(&o->cap_path);
        fh_buf_printf(&o->cap_path, "%s/%s.xml", o->cap_dir, o->cap_id.data);
        int r = write_file(o->cap_path.data, o->cap_xml.data, o->cap_xml.len);
        if (r < 0) {
                fprintf(stderr, "fenghuo replay: failed to write %s: %s\n", o->cap_path.data, strerror(-r));
                o->cap_err = r;
        }
}

static void on_alert(void *userdata, const fh_alert *a) {
        replay_out *o = userdata;

        fh_buf_reset(&o->line);
        fh_alert_to_json(o->e, a, &o->line);
        fh_buf_putc(&o->line, '\n');
        fwrite(o->line.data, 1, o->line.len, o->f);
        if (o->cap_on)
                write_cap(o, a);
}

static void usage(FILE *f) {
        fputs("usage: fenghuo replay --rules DIR --stations FILE [--tick 60s] [--lateness 1h]\n"
              "                      [--tz +08:00] [--max-readings-per-minute 60]\n"
              "                      [--max-window-samples 50000]\n"
              "                      [--cap DIR [--cap-unit CODE] [--cap-sender NAME]] [FILE|-]\n"
              "Reads readings as JSON Lines and writes the alert events they cause, one\n"
              "JSON object per line, to standard output. Rejected lines are reported on\n"
              "standard error with their line number; a summary ends the run.\n"
              "--cap DIR also writes each event as a CAP 1.2 message (GB/T 35965.1 profile,\n"
              "status Exercise) to DIR/<identifier>.xml; --cap-unit is the 14-digit\n"
              "issuing-unit code (default 11011800000000, Miyun), --cap-sender its name.\n", f);
}

static void print_summary(const fh_engine *e, unsigned long long lines) {
        const fh_engine_stats *s = fh_engine_stats_get(e);
        unsigned long long rejected = 0;
        fh_buf b = FH_BUF_NULL;

        for (int i = 1; i < FH_REJECT__MAX; i++)
                rejected += s->rejected[i];
        fh_buf_printf(&b, "summary: %llu lines, %llu accepted (%llu late), %llu rejected",
                      lines, (unsigned long long) s->accepted, (unsigned long long) s->late, rejected);
        if (rejected) {
                const char *sep = " (";
                for (int i = 1; i < FH_REJECT__MAX; i++)
                        if (s->rejected[i]) {
                                fh_buf_printf(&b, "%s%s %llu", sep, fh_reject_name((fh_reject) i),
                                              (unsigned long long) s->rejected[i]);
                                sep = ", ";
                        }
                fh_buf_putc(&b, ')');
        }
        fh_buf_printf(&b, ", %llu duplicates, %llu dropped; alerts: %llu raised, %llu escalated, "
                      "%llu deescalated, %llu cleared",
                      (unsigned long long) s->duplicates, (unsigned long long) s->dropped,
                      (unsigned long long) s->events[FH_EVENT_RAISED],
                      (unsigned long long) s->events[FH_EVENT_ESCALATED],
                      (unsigned long long) s->events[FH_EVENT_DEESCALATED],
                      (unsigned long long) s->events[FH_EVENT_CLEARED]);
        if (s->ticks_skipped)
                fh_buf_printf(&b, "; %llu tick boundaries skipped after a clock jump",
                              (unsigned long long) s->ticks_skipped);
        fprintf(stderr, "%s\n", b.data);
        fh_buf_free(&b);
}

int fh_cmd_replay(int argc, char **argv) {
        static const struct option opts[] = {
                { "rules", required_argument, NULL, 'r' },
                { "stations", required_argument, NULL, 's' },
                { "tick", required_argument, NULL, 't' },
                { "lateness", required_argument, NULL, 'l' },
                { "tz", required_argument, NULL, 'z' },
                { "max-readings-per-minute", required_argument, NULL, 'M' },
                { "max-window-samples", required_argument, NULL, 'W' },
                { "cap", required_argument, NULL, 'C' },
                { "cap-unit", required_argument, NULL, 'U' },
                { "cap-sender", required_argument, NULL, 'N' },
                { "help", no_argument, NULL, 'h' },
                {}
        };
        fh_engine_config cfg = FH_ENGINE_CONFIG_DEFAULT;
        fh_cap_config cap = FH_CAP_CONFIG_DEFAULT;
        const char *cap_dir = NULL;
        const char *rules = NULL, *stations = NULL, *input = "-";
        fh_diags diags = FH_DIAGS_NULL;
        fh_engine *e = NULL;
        int c, r;

        optind = 1;
        while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1)
                switch (c) {
                case 'r': rules = optarg; break;
                case 's': stations = optarg; break;
                case 't':
                case 'l':
                case 'z':
                case 'M':
                case 'W':
                        if (fh_engine_option(&cfg, c, optarg, "replay") < 0)
                                return 2;
                        break;
                case 'C': cap_dir = optarg; break;
                case 'U': cap.unit = optarg; break;
                case 'N': cap.sender = optarg; break;
                case 'h':
                        usage(stdout);
                        return 0;
                default:
                        usage(stderr);
                        return 2;
                }
        if (!rules || !stations || argc - optind > 1) {
                usage(stderr);
                return 2;
        }
        if (optind < argc)
                input = argv[optind];
        /* Replayed data is never a real emergency: CAP says Exercise. */
        cap.exercise = true;
        cap.tz_offset_min = cfg.tz_offset_min;
        if (cap_dir) {
                char why[256];
                if (fh_cap_config_check(&cap, why, sizeof(why)) < 0) {
                        fprintf(stderr, "fenghuo replay: %s\n", why);
                        return 2;
                }
                if (mkdir(cap_dir, 0777) < 0 && errno != EEXIST) {
                        fprintf(stderr, "fenghuo replay: cannot create %s: %s\n", cap_dir, strerror(errno));
                        return 2;
                }
        }

        int fd = fh_open_input("replay", input);
        if (fd < 0)
                return 2;

        r = fh_load_engine(rules, stations, &cfg, &e, &diags);
        fh_diags_sort(&diags);
        fh_print_diags(&diags);
        fh_diags_clear(&diags);
        if (r < 0) {
                if (fd != STDIN_FILENO)
                        close(fd);
                return 1;
        }

        replay_out out = { .e = e, .f = stdout, .cap_dir = cap_dir, .cap = cap, .cap_on = cap_dir != NULL };
        static char obuf[1 << 16];
        setvbuf(stdout, obuf, _IOFBF, sizeof(obuf));
        fh_engine_set_alert_cb(e, on_alert, &out);

        unsigned long long lineno = 0;
        int exit_code = 0;

        r = fh_feed(fd, &e, 1, &(fh_feed_opts) { .say_rejects = true }, &lineno);
        if (r < 0) {
                fprintf(stderr, "fenghuo replay: failed to read %s after line %llu: %s\n",
                        input, lineno, strerror(-r));
                exit_code = 1;
        }
        if (fflush(stdout) != 0 || ferror(stdout)) {
                fprintf(stderr, "fenghuo replay: failed to write alerts: %s\n", strerror(errno));
                exit_code = 1;
        }
        if (out.cap_err)
                exit_code = 1;
        print_summary(e, lineno);

        fh_buf_free(&out.line);
        fh_buf_free(&out.cap_id);
        fh_buf_free(&out.cap_xml);
        fh_buf_free(&out.cap_path);
        if (fd != STDIN_FILENO)
                close(fd);
        fh_engine_free(e);
        return exit_code;
}
