/* `fenghuo diff`: the same history replayed under two rule sets, and what
 * the change does to each (rule, station) pair's alerts (docs/rules.md §9).
 *
 * An alert here is one episode of a pair, from `raised` to `cleared`, with
 * the tiers it went through. Episodes of the two sides are matched when
 * they overlap in time; what is left over appears or disappears. */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fenghuo/timeutil.h"
#include "cli.h"
#include "plot.h"

typedef struct step {
        int64_t ts;
        fh_event event;
        fh_level level;
        double value;
} step;

typedef struct episode {
        const char *rule;          /* into the side's rule set */
        const char *title;
        const char *sensor;        /* into the side's registry */
        int64_t raised, cleared;   /* cleared: FH_TIME_NONE while active at the end */
        fh_level peak;
        step *steps;
        size_t n_steps, cap_steps;
        bool open;
        struct episode *match;
} episode;

typedef struct side {
        const char *dir;
        fh_engine *e;
        episode **v;               /* pointers: the open ones are found by pair */
        size_t n, cap;
} side;

static void on_alert(void *userdata, const fh_alert *a) {
        side *s = userdata;
        episode *ep = NULL;

        if (a->event != FH_EVENT_RAISED) {
                /* The open episode of this pair; recent ones are at the end. */
                for (size_t i = s->n; i-- > 0;)
                        if (s->v[i]->open && s->v[i]->rule == a->rule->id && s->v[i]->sensor == a->station->id) {
                                ep = s->v[i];
                                break;
                        }
        }
        if (!ep) {
                if (s->n == s->cap) {
                        s->cap = s->cap ? 2 * s->cap : 64;
                        s->v = realloc(s->v, s->cap * sizeof(*s->v));
                        if (!s->v)
                                fh_oom();
                }
                ep = calloc(1, sizeof(*ep));
                if (!ep)
                        fh_oom();
                ep->rule = a->rule->id;
                ep->title = a->rule->title;
                ep->sensor = a->station->id;
                ep->raised = a->ts_ms;
                ep->cleared = FH_TIME_NONE;
                ep->open = true;
                s->v[s->n++] = ep;
        }
        if (ep->n_steps == ep->cap_steps) {
                ep->cap_steps = ep->cap_steps ? 2 * ep->cap_steps : 4;
                ep->steps = realloc(ep->steps, ep->cap_steps * sizeof(*ep->steps));
                if (!ep->steps)
                        fh_oom();
        }
        ep->steps[ep->n_steps++] = (step) { a->ts_ms, a->event, a->level, a->value };
        if (a->level > ep->peak)
                ep->peak = a->level;
        if (a->event == FH_EVENT_CLEARED) {
                ep->cleared = a->ts_ms;
                ep->open = false;
        }
}

static void side_free(side *s) {
        for (size_t i = 0; i < s->n; i++) {
                free(s->v[i]->steps);
                free(s->v[i]);
        }
        free(s->v);
        fh_engine_free(s->e);
}

static int cmp_episode(const void *pa, const void *pb) {
        const episode *a = *(episode *const *) pa, *b = *(episode *const *) pb;
        int c = strcmp(a->rule, b->rule);

        if (c)
                return c;
        if ((c = strcmp(a->sensor, b->sensor)))
                return c;
        return a->raised < b->raised ? -1 : a->raised > b->raised;
}

static bool overlap(const episode *a, const episode *b) {
        int64_t ae = a->cleared == FH_TIME_NONE ? INT64_MAX : a->cleared;
        int64_t be = b->cleared == FH_TIME_NONE ? INT64_MAX : b->cleared;

        /* An episode cleared at the very time another is raised still
         * touches it: the same storm, one evaluation apart. */
        return a->raised <= be && b->raised <= ae;
}

static bool same_steps(const episode *a, const episode *b) {
        if (a->n_steps != b->n_steps)
                return false;
        for (size_t i = 0; i < a->n_steps; i++)
                if (a->steps[i].ts != b->steps[i].ts || a->steps[i].level != b->steps[i].level)
                        return false;
        return true;
}

/* One rule's comparison. */
typedef struct rule_diff {
        const char *rule, *title;
        size_t old_n, new_n, appear, disappear, change, same;
        size_t rises[2][FH_LEVEL__MAX];
        /* The episodes that differ, in sensor then time order: (old, new)
         * with either NULL for appear/disappear. */
        episode **pairs;
        size_t n_pairs, cap_pairs;
} rule_diff;

typedef struct diff {
        rule_diff *v;
        size_t n, cap;
} diff;

static rule_diff *rule_of(diff *d, const char *rule, const char *title) {
        for (size_t i = 0; i < d->n; i++)
                if (!strcmp(d->v[i].rule, rule))
                        return &d->v[i];
        if (d->n == d->cap) {
                d->cap = d->cap ? 2 * d->cap : 16;
                d->v = realloc(d->v, d->cap * sizeof(*d->v));
                if (!d->v)
                        fh_oom();
        }
        rule_diff *r = &d->v[d->n++];
        memset(r, 0, sizeof(*r));
        r->rule = rule;
        r->title = title;
        return r;
}

static void add_pair(rule_diff *r, episode *o, episode *n) {
        if (r->n_pairs + 2 > r->cap_pairs) {
                r->cap_pairs = r->cap_pairs ? 2 * r->cap_pairs : 16;
                r->pairs = realloc(r->pairs, r->cap_pairs * sizeof(*r->pairs));
                if (!r->pairs)
                        fh_oom();
        }
        r->pairs[r->n_pairs++] = o;
        r->pairs[r->n_pairs++] = n;
}

static void count_rises(rule_diff *r, int k, const episode *ep) {
        for (size_t i = 0; i < ep->n_steps; i++)
                if (ep->steps[i].event == FH_EVENT_RAISED || ep->steps[i].event == FH_EVENT_ESCALATED)
                        r->rises[k][ep->steps[i].level]++;
}

static int cmp_rule_diff(const void *pa, const void *pb) {
        return strcmp(((const rule_diff *) pa)->rule, ((const rule_diff *) pb)->rule);
}

static const char *pair_sensor(episode *const *p) {
        return p[0] ? p[0]->sensor : p[1]->sensor;
}

static int64_t pair_time(episode *const *p) {
        return p[0] && p[1] ? FH_MIN(p[0]->raised, p[1]->raised) : p[0] ? p[0]->raised : p[1]->raised;
}

static int cmp_pair(const void *pa, const void *pb) {
        episode *const *a = pa, *const *b = pb;
        int c = strcmp(pair_sensor(a), pair_sensor(b));

        if (c)
                return c;
        return pair_time(a) < pair_time(b) ? -1 : pair_time(a) > pair_time(b);
}

/* Old and new are sorted by (rule, sensor, raised). */
static void compare(side *old, side *new, diff *d) {
        size_t i = 0, j = 0;

        for (size_t k = 0; k < old->n; k++) {
                rule_diff *r = rule_of(d, old->v[k]->rule, old->v[k]->title);
                r->old_n++;
                count_rises(r, 0, old->v[k]);
        }
        for (size_t k = 0; k < new->n; k++) {
                rule_diff *r = rule_of(d, new->v[k]->rule, new->v[k]->title);
                r->new_n++;
                count_rises(r, 1, new->v[k]);
        }
        /* Walk both sides one (rule, sensor) group at a time. */
        while (i < old->n || j < new->n) {
                const episode *head;
                if (j == new->n || (i < old->n && cmp_episode(&old->v[i], &new->v[j]) <= 0))
                        head = old->v[i];
                else
                        head = new->v[j];
                size_t i1 = i, j1 = j;
                while (i1 < old->n && !strcmp(old->v[i1]->rule, head->rule) && !strcmp(old->v[i1]->sensor, head->sensor))
                        i1++;
                while (j1 < new->n && !strcmp(new->v[j1]->rule, head->rule) && !strcmp(new->v[j1]->sensor, head->sensor))
                        j1++;
                rule_diff *r = rule_of(d, head->rule, head->title);
                for (size_t a = i; a < i1; a++)
                        for (size_t b = j; b < j1; b++)
                                if (!new->v[b]->match && overlap(old->v[a], new->v[b])) {
                                        old->v[a]->match = new->v[b];
                                        new->v[b]->match = old->v[a];
                                        break;
                                }
                for (size_t a = i; a < i1; a++) {
                        episode *o = old->v[a];
                        if (!o->match) {
                                r->disappear++;
                                add_pair(r, o, NULL);
                        } else if (same_steps(o, o->match))
                                r->same++;
                        else {
                                r->change++;
                                add_pair(r, o, o->match);
                        }
                }
                for (size_t b = j; b < j1; b++)
                        if (!new->v[b]->match) {
                                r->appear++;
                                add_pair(r, NULL, new->v[b]);
                        }
                i = i1;
                j = j1;
        }
        if (d->n)
                qsort(d->v, d->n, sizeof(*d->v), cmp_rule_diff);
        for (size_t k = 0; k < d->n; k++)
                if (d->v[k].n_pairs)
                        qsort(d->v[k].pairs, d->v[k].n_pairs / 2, 2 * sizeof(episode *), cmp_pair);
}

static void diff_free(diff *d) {
        for (size_t i = 0; i < d->n; i++)
                free(d->v[i].pairs);
        free(d->v);
}

/* ---- text ---- */

typedef struct out {
        FILE *f;
        int tz;
} out;

/* "2013-07-15 03:00", or "07-15 03:00" when short. */
static const char *when(const out *o, int64_t ms, bool short_form, char *buf) {
        fh_time_format_local(ms, o->tz, buf);
        return short_form ? buf + 5 : buf;
}

static void print_steps(const out *o, const episode *ep) {
        char t[FH_TIME_LOCAL_MAX];

        for (size_t i = 0; i < ep->n_steps; i++) {
                const step *s = &ep->steps[i];
                fprintf(o->f, "%s%s %s", i ? " → " : "",
                        s->event == FH_EVENT_CLEARED ? "cleared" : fh_level_name(s->level), when(o, s->ts, true, t));
                if (!isnan(s->value) && s->event != FH_EVENT_CLEARED)
                        fprintf(o->f, " (%.10g)", s->value);
        }
        if (ep->cleared == FH_TIME_NONE)
                fputs(" → still active at the end", o->f);
        fputc('\n', o->f);
}

static void print_pair(const out *o, episode *const *p) {
        episode *ol = p[0], *nw = p[1];
        char t1[FH_TIME_LOCAL_MAX], t2[FH_TIME_LOCAL_MAX];

        if (!ol || !nw) {
                const episode *ep = ol ? ol : nw;
                fprintf(o->f, "  %s %-14s %s %s, peak %s: ", ol ? "-" : "+", ep->sensor, when(o, ep->raised, false, t1),
                        ol ? "disappears" : "appears", fh_level_name(ep->peak));
                print_steps(o, ep);
                return;
        }
        fprintf(o->f, "  ~ %-14s %s changes:", ol->sensor, when(o, FH_MIN(ol->raised, nw->raised), false, t1));
        const char *sep = " ";
        if (ol->peak != nw->peak) {
                fprintf(o->f, "%speak %s → %s", sep, fh_level_name(ol->peak), fh_level_name(nw->peak));
                sep = ", ";
        }
        if (ol->raised != nw->raised) {
                fprintf(o->f, "%sraised %s → %s", sep, when(o, ol->raised, true, t1), when(o, nw->raised, true, t2));
                sep = ", ";
        }
        if (ol->cleared != nw->cleared) {
                fprintf(o->f, "%scleared %s → %s", sep,
                        ol->cleared == FH_TIME_NONE ? "never" : when(o, ol->cleared, true, t1),
                        nw->cleared == FH_TIME_NONE ? "never" : when(o, nw->cleared, true, t2));
                sep = ", ";
        }
        if (*sep == ' ')
                fputs(" tiers at other times", o->f);
        fputs("\n      old: ", o->f);
        print_steps(o, ol);
        fputs("      new: ", o->f);
        print_steps(o, nw);
}

static void print_text(const out *o, const diff *d) {
        size_t unchanged = 0;

        for (size_t k = 0; k < d->n; k++) {
                const rule_diff *r = &d->v[k];
                if (!r->n_pairs) {
                        unchanged++;
                        continue;
                }
                fprintf(o->f, "%s", r->rule);
                if (r->title)
                        fprintf(o->f, " (%s)", r->title);
                fprintf(o->f, ": %zu alert%s before, %zu after: %zu appear, %zu disappear, %zu change, %zu the same\n",
                        r->old_n, r->old_n == 1 ? "" : "s", r->new_n, r->appear, r->disappear, r->change, r->same);
                fputs("  rises to      red  orange  yellow    blue\n", o->f);
                for (int s = 0; s < 3; s++) {
                        char row[128];
                        int n = snprintf(row, sizeof(row), "  %-10s", s == 0 ? "old" : s == 1 ? "new" : "change");
                        for (int l = FH_LEVEL_RED; l >= FH_LEVEL_BLUE; l--) {
                                long long a = (long long) r->rises[0][l], b = (long long) r->rises[1][l];
                                if (s < 2)
                                        n += snprintf(row + n, sizeof(row) - (size_t) n, " %7lld", s == 0 ? a : b);
                                else if (a != b)
                                        n += snprintf(row + n, sizeof(row) - (size_t) n, " %+7lld", b - a);
                                else
                                        n += snprintf(row + n, sizeof(row) - (size_t) n, " %7s", "");
                        }
                        /* No trailing blanks: the output is pasted into docs and mails. */
                        while (n > 0 && row[n - 1] == ' ')
                                row[--n] = 0;
                        fprintf(o->f, "%s\n", row);
                }
                for (size_t i = 0; i < r->n_pairs; i += 2)
                        print_pair(o, &r->pairs[i]);
                fputc('\n', o->f);
        }
        if (unchanged) {
                fputs("the same:", o->f);
                for (size_t k = 0; k < d->n; k++)
                        if (!d->v[k].n_pairs)
                                fprintf(o->f, " %s (%zu)", d->v[k].rule, d->v[k].old_n);
                fputc('\n', o->f);
        }
        if (d->n == 0)
                fputs("no alerts under either rule set\n", o->f);
}

/* ---- JSON ---- */

static void json_time(fh_buf *b, const out *o, int64_t ms) {
        char t[FH_TIME_RFC3339_MAX];

        if (ms == FH_TIME_NONE) {
                fh_buf_puts(b, "null");
                return;
        }
        size_t n = fh_time_format_rfc3339(ms, o->tz, t);
        fh_buf_json_string(b, t, n);
}

static void json_episode(fh_buf *b, const out *o, const episode *ep) {
        if (!ep) {
                fh_buf_puts(b, "null");
                return;
        }
        fh_buf_puts(b, "{\"raised\":");
        json_time(b, o, ep->raised);
        fh_buf_puts(b, ",\"cleared\":");
        json_time(b, o, ep->cleared);
        fh_buf_printf(b, ",\"peak\":\"%s\",\"steps\":[", fh_level_name(ep->peak));
        for (size_t i = 0; i < ep->n_steps; i++) {
                const step *s = &ep->steps[i];
                fh_buf_printf(b, "%s{\"ts\":", i ? "," : "");
                json_time(b, o, s->ts);
                fh_buf_printf(b, ",\"event\":\"%s\",\"level\":\"%s\",\"value\":", fh_event_name(s->event),
                              fh_level_name(s->level));
                fh_buf_json_number(b, s->value);
                fh_buf_putc(b, '}');
        }
        fh_buf_puts(b, "]}");
}

static void print_json(const out *o, const diff *d, const char *old_dir, const char *new_dir) {
        fh_buf b = FH_BUF_NULL;

        fh_buf_puts(&b, "{\"old\":");
        fh_buf_json_string(&b, old_dir, strlen(old_dir));
        fh_buf_puts(&b, ",\"new\":");
        fh_buf_json_string(&b, new_dir, strlen(new_dir));
        fh_buf_puts(&b, ",\"rules\":[");
        for (size_t k = 0; k < d->n; k++) {
                const rule_diff *r = &d->v[k];
                fh_buf_printf(&b, "%s\n{\"rule\":", k ? "," : "");
                fh_buf_json_string(&b, r->rule, strlen(r->rule));
                fh_buf_printf(&b, ",\"alerts\":{\"old\":%zu,\"new\":%zu},\"appear\":%zu,\"disappear\":%zu,"
                              "\"change\":%zu,\"same\":%zu,\"rises\":{",
                              r->old_n, r->new_n, r->appear, r->disappear, r->change, r->same);
                for (int l = FH_LEVEL_RED; l >= FH_LEVEL_BLUE; l--)
                        fh_buf_printf(&b, "%s\"%s\":{\"old\":%zu,\"new\":%zu}", l == FH_LEVEL_RED ? "" : ",",
                                      fh_level_name((fh_level) l), r->rises[0][l], r->rises[1][l]);
                fh_buf_puts(&b, "},\"changes\":[");
                for (size_t i = 0; i < r->n_pairs; i += 2) {
                        episode *ol = r->pairs[i], *nw = r->pairs[i + 1];
                        const char *what = !ol ? "appears" : !nw ? "disappears" : "changes";
                        const char *sensor = ol ? ol->sensor : nw->sensor;
                        fh_buf_printf(&b, "%s\n {\"sensor\":", i ? "," : "");
                        fh_buf_json_string(&b, sensor, strlen(sensor));
                        fh_buf_printf(&b, ",\"change\":\"%s\",\"old\":", what);
                        json_episode(&b, o, ol);
                        fh_buf_puts(&b, ",\"new\":");
                        json_episode(&b, o, nw);
                        fh_buf_putc(&b, '}');
                }
                fh_buf_puts(&b, "]}");
        }
        fh_buf_puts(&b, "]}\n");
        fwrite(b.data, 1, b.len, o->f);
        fh_buf_free(&b);
}

/* ---- plots of the changed pairs ---- */

/* One SVG per changed alert, old above new, named after the rule, the
 * station and the time: rainstorm_BJ-RG-HUAIROU_20130628T2100.svg. */
static int write_plots(const char *dir, int fd, const side *old, const side *new, const diff *d,
                       const char *stations, const fh_engine_config *cfg) {
        size_t n = 0;
        fh_plot_request *req;
        char **paths;
        int r;

        if (mkdir(dir, 0777) < 0 && errno != EEXIST) {
                fprintf(stderr, "fenghuo diff: cannot make %s: %s\n", dir, strerror(errno));
                return -1;
        }
        for (size_t k = 0; k < d->n; k++)
                n += d->v[k].n_pairs / 2;
        req = calloc(n + 1, sizeof(*req));
        paths = calloc(n + 1, sizeof(*paths));
        if (!req || !paths)
                fh_oom();
        n = 0;
        for (size_t k = 0; k < d->n; k++)
                for (size_t i = 0; i < d->v[k].n_pairs; i += 2) {
                        episode *const *p = &d->v[k].pairs[i];
                        fh_plot_request *q = &req[n];
                        int64_t from = INT64_MAX, to = INT64_MIN;
                        char lt[FH_TIME_LOCAL_MAX];
                        for (int s = 0; s < 2; s++) {
                                const episode *ep = p[s];
                                if (!ep)
                                        continue;
                                from = FH_MIN(from, ep->raised);
                                to = FH_MAX(to, ep->cleared == FH_TIME_NONE ? ep->steps[ep->n_steps - 1].ts : ep->cleared);
                        }
                        fh_time_format_local(from, cfg->tz_offset_min, lt);
                        /* Context on both sides: the rise and the lull after. */
                        int64_t pad = FH_MAX((to - from) / 3, (int64_t) 3 * 3600000);
                        from -= pad;
                        to += pad;
                        /* "2013-06-28 21:00" -> "20130628T2100" */
                        if (asprintf(&paths[n], "%s/%s_%s_%.4s%.2s%.2sT%.2s%.2s.svg", dir, d->v[k].rule,
                                     pair_sensor(p), lt, lt + 5, lt + 8, lt + 11, lt + 14) < 0)
                                fh_oom();
                        *q = (fh_plot_request) {
                                .sensor = pair_sensor(p), .from = from, .to = to, .path = paths[n],
                                .panels = { { 0, d->v[k].rule }, { 1, d->v[k].rule } }, .n_panels = 2,
                        };
                        n++;
                }
        const char *dirs[2] = { old->dir, new->dir };
        const char *labels[2] = { "old", "new" };
        fh_plot_runs runs = { dirs, labels, 2, stations, cfg, true };
        r = n ? fh_plot_write("diff", fd, &runs, req, n) : 0;
        if (r == 0)
                fprintf(stderr, "fenghuo diff: %zu plot%s written to %s\n", n, n == 1 ? "" : "s", dir);
        for (size_t i = 0; i < n; i++)
                free(paths[i]);
        free(paths);
        free(req);
        return r;
}

static void usage(FILE *f) {
        fputs("usage: fenghuo diff --old DIR --new DIR --stations FILE [--json] [--plots DIR]\n"
              "        " FH_ENGINE_USAGE " [FILE|-]\n"
              "Replays the readings (JSON Lines) under both rule sets and shows, per rule and\n"
              "station, the alerts that appear, disappear or change tier or time, and how\n"
              "many rises to each tier there are before and after. --json writes the same as\n"
              "one JSON document; --plots writes an SVG of each changed alert to DIR.\n"
              "Exit 0 when both replays read the input to the end, 1 when a rule or station\n"
              "file is invalid, 2 for bad usage.\n", f);
}

int fh_cmd_diff(int argc, char **argv) {
        static const struct option opts[] = {
                { "old", required_argument, NULL, 'o' },
                { "new", required_argument, NULL, 'n' },
                { "stations", required_argument, NULL, 's' },
                { "json", no_argument, NULL, 'j' },
                { "plots", required_argument, NULL, 'p' },
                FH_ENGINE_LONGOPTS,
                { "help", no_argument, NULL, 'h' },
                {}
        };
        fh_engine_config cfg = FH_ENGINE_CONFIG_DEFAULT;
        const char *stations = NULL, *input = "-", *plots = NULL;
        side old = { 0 }, new = { 0 };
        fh_diags diags = FH_DIAGS_NULL;
        bool json = false;
        int c, r, exit_code = 0;

        optind = 1;
        while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1)
                switch (c) {
                case 'o': old.dir = optarg; break;
                case 'n': new.dir = optarg; break;
                case 's': stations = optarg; break;
                case 'j': json = true; break;
                case 'p': plots = optarg; break;
                case 't':
                case 'l':
                case 'z':
                case 'M':
                case 'W':
                        if (fh_engine_option(&cfg, c, optarg, "diff") < 0)
                                return 2;
                        break;
                case 'h':
                        usage(stdout);
                        return 0;
                default:
                        usage(stderr);
                        return 2;
                }
        if (!old.dir || !new.dir || !stations || argc - optind > 1) {
                usage(stderr);
                return 2;
        }
        if (optind < argc)
                input = argv[optind];
        /* The plots replay the input a second time: keep a copy of a pipe. */
        int fd = plots ? fh_open_input_rewindable("diff", input) : fh_open_input("diff", input);
        if (fd < 0)
                return 2;

        int r1 = fh_load_engine(old.dir, stations, &cfg, &old.e, &diags);
        int r2 = fh_load_engine(new.dir, stations, &cfg, &new.e, &diags);
        fh_diags_sort(&diags);
        fh_print_diags(&diags);
        fh_diags_clear(&diags);
        if (r1 < 0 || r2 < 0) {
                fh_engine_free(old.e);
                fh_engine_free(new.e);
                if (fd != STDIN_FILENO)
                        close(fd);
                return 1;
        }
        fh_engine_set_alert_cb(old.e, on_alert, &old);
        fh_engine_set_alert_cb(new.e, on_alert, &new);

        fh_engine *both[2] = { old.e, new.e };
        unsigned long long lines = 0;
        r = fh_feed(fd, both, 2, &(fh_feed_opts) { .say_rejects = true }, &lines);
        if (r < 0) {
                fprintf(stderr, "fenghuo diff: failed to read %s after line %llu: %s\n", input, lines, strerror(-r));
                exit_code = 1;
        } else {
                const fh_engine_stats *st = fh_engine_stats_get(old.e);
                fprintf(stderr, "fenghuo diff: %llu lines, %llu readings accepted\n", lines,
                        (unsigned long long) st->accepted);
        }

        diff d = { 0 };
        out o = { stdout, cfg.tz_offset_min };
        /* qsort wants an array even for none: no alerts leaves them NULL. */
        if (old.n)
                qsort(old.v, old.n, sizeof(*old.v), cmp_episode);
        if (new.n)
                qsort(new.v, new.n, sizeof(*new.v), cmp_episode);
        if (exit_code == 0) {
                compare(&old, &new, &d);
                if (json)
                        print_json(&o, &d, old.dir, new.dir);
                else
                        print_text(&o, &d);
                if (fflush(stdout) != 0 || ferror(stdout)) {
                        fprintf(stderr, "fenghuo diff: failed to write: %s\n", strerror(errno));
                        exit_code = 1;
                }
                if (plots && exit_code == 0 && write_plots(plots, fd, &old, &new, &d, stations, &cfg) < 0)
                        exit_code = 1;
        }
        diff_free(&d);
        side_free(&old);
        side_free(&new);
        if (fd != STDIN_FILENO)
                close(fd);
        return exit_code;
}
