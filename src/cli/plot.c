#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fenghuo/buf.h"
#include "fenghuo/timeutil.h"
#include "cli.h"
#include "plot.h"

#define LINES_MAX  8
#define FIELDS_MAX 4

/* ---- what is captured ---- */

/* A tier's comparison: `report >= thr` is drawn as a threshold line;
 * `qty >= thr` with another quantity draws that quantity too. */
typedef struct line_def {
        fh_level level;
        fh_program thr, qty;
        bool has_qty;
        char label[300];
} line_def;

typedef struct series {
        int64_t *ts;
        double *v;
        size_t n, cap;
} series;

typedef struct panel_data {
        const fh_rule *rule;       /* NULL: the rule set has no such rule */
        const fh_station *st;
        line_def lines[LINES_MAX];
        size_t n_lines;
        size_t n, cap;
        int64_t *ts;
        double *report;
        uint8_t *level;
        double *thr[LINES_MAX], *qty[LINES_MAX];
} panel_data;

typedef struct req_data {
        fh_plot_request *req;
        int64_t from, to;          /* captured range, padded */
        panel_data panels[FH_PLOT_PANELS_MAX];
        char fields[FIELDS_MAX][FH_FIELD_NAME_MAX + 1];
        size_t n_fields;
        series raw[FIELDS_MAX];
        fh_kind kind;
        char station_name[256];
        bool station_found;
} req_data;

typedef struct capture {
        req_data *rq;
        size_t n;
        size_t run;
} capture;

static void *grow(void *p, size_t n, size_t size) {
        void *q = realloc(p, n * size);
        if (!q)
                fh_oom();
        return q;
}

static void series_add(series *s, int64_t ts, double v) {
        if (s->n == s->cap) {
                s->cap = s->cap ? 2 * s->cap : 256;
                s->ts = grow(s->ts, s->cap, sizeof(*s->ts));
                s->v = grow(s->v, s->cap, sizeof(*s->v));
        }
        s->ts[s->n] = ts;
        s->v[s->n++] = v;
}

static const char *op_text(fh_opcode op, bool mirrored) {
        switch (op) {
        case FH_OP_LT: return mirrored ? ">" : "<";
        case FH_OP_LE: return mirrored ? "≥" : "≤";
        case FH_OP_GT: return mirrored ? "<" : ">";
        case FH_OP_GE: return mirrored ? "≤" : "≥";
        case FH_OP_EQ: return "=";
        default: return "≠";
        }
}

static bool reads_fields(const fh_program *p) {
        for (uint32_t i = 0; i < p->n; i++)
                if (p->code[i].op >= FH_OP_AGE && p->code[i].op <= FH_OP_RATE)
                        return true;
        return false;
}

static void note_field(req_data *d, const fh_ruleset *rs, const fh_program *p) {
        if (!p)
                return;
        for (uint32_t i = 0; i < p->n; i++)
                if (p->code[i].op >= FH_OP_LAST && p->code[i].op <= FH_OP_RATE) {
                        const char *name = rs->syms.fields[p->code[i].field];
                        for (size_t k = 0; k < d->n_fields; k++)
                                if (!strcmp(d->fields[k], name))
                                        return;
                        if (d->n_fields < FIELDS_MAX)
                                snprintf(d->fields[d->n_fields++], sizeof(d->fields[0]), "%s", name);
                        return;
                }
}

static void panel_setup(panel_data *p, req_data *d, const fh_engine *e, const char *rule_id) {
        const fh_ruleset *rs = fh_engine_rules(e);
        const fh_rule *r = fh_ruleset_find(rs, rule_id);

        p->st = fh_registry_find(fh_engine_registry(e), d->req->sensor, strlen(d->req->sensor));
        if (!r || !p->st)
                return;
        p->rule = r;
        note_field(d, rs, r->report);
        for (int l = FH_LEVEL_RED; l >= FH_LEVEL_BLUE; l--) {
                fh_compare c[4];
                size_t n;
                int per_level = 0;
                if (!r->levels[l])
                        continue;
                note_field(d, rs, r->levels[l]);
                n = FH_MIN(fh_program_compares(r->levels[l], c, 4), (size_t) 4);
                for (size_t k = 0; k < n && per_level < 2 && p->n_lines < LINES_MAX; k++) {
                        line_def *ld = &p->lines[p->n_lines];
                        bool mirrored = false;
                        memset(ld, 0, sizeof(*ld));
                        ld->level = (fh_level) l;
                        if (r->report && fh_program_same(&c[k].left, r->report))
                                ld->thr = c[k].right;
                        else if (r->report && fh_program_same(&c[k].right, r->report)) {
                                ld->thr = c[k].left;
                                mirrored = true;
                        } else if (reads_fields(&c[k].left) && !reads_fields(&c[k].right)) {
                                ld->qty = c[k].left;
                                ld->thr = c[k].right;
                                ld->has_qty = true;
                        } else if (reads_fields(&c[k].right) && !reads_fields(&c[k].left)) {
                                ld->qty = c[k].right;
                                ld->thr = c[k].left;
                                ld->has_qty = true;
                                mirrored = true;
                        } else
                                continue;
                        /* A threshold's label is finished once its value is
                         * known; a quantity is told by its whole condition. */
                        if (ld->has_qty)
                                snprintf(ld->label, sizeof(ld->label), "%s: %s", fh_level_name((fh_level) l),
                                         r->levels[l]->source);
                        else
                                snprintf(ld->label, sizeof(ld->label), "%s", op_text(c[k].op, mirrored));
                        p->n_lines++;
                        per_level++;
                }
        }
}

static void on_eval(void *userdata, const fh_evaluation *ev) {
        capture *c = userdata;

        for (size_t q = 0; q < c->n; q++) {
                req_data *d = &c->rq[q];
                if (ev->ts_ms < d->from || ev->ts_ms > d->to)
                        continue;
                for (size_t k = 0; k < d->req->n_panels; k++) {
                        panel_data *p = &d->panels[k];
                        if (d->req->panels[k].run != c->run || p->rule != ev->rule || p->st != ev->station)
                                continue;
                        if (p->n == p->cap) {
                                p->cap = p->cap ? 2 * p->cap : 256;
                                p->ts = grow(p->ts, p->cap, sizeof(*p->ts));
                                p->report = grow(p->report, p->cap, sizeof(*p->report));
                                p->level = grow(p->level, p->cap, sizeof(*p->level));
                                for (size_t i = 0; i < p->n_lines; i++) {
                                        p->thr[i] = grow(p->thr[i], p->cap, sizeof(double));
                                        p->qty[i] = grow(p->qty[i], p->cap, sizeof(double));
                                }
                        }
                        p->ts[p->n] = ev->ts_ms;
                        p->report[p->n] = ev->rule->report ? fh_program_eval(ev->rule->report, ev->env) : NAN;
                        p->level[p->n] = (uint8_t) ev->level;
                        for (size_t i = 0; i < p->n_lines; i++) {
                                p->thr[i][p->n] = fh_program_eval(&p->lines[i].thr, ev->env);
                                p->qty[i][p->n] = p->lines[i].has_qty ? fh_program_eval(&p->lines[i].qty, ev->env) : NAN;
                        }
                        p->n++;
                }
        }
}

static void on_reading(void *userdata, const fh_reading *r) {
        capture *c = userdata;

        for (size_t q = 0; q < c->n; q++) {
                req_data *d = &c->rq[q];
                if (r->ts_ms < d->from || r->ts_ms > d->to || strcmp(r->sensor, d->req->sensor))
                        continue;
                for (size_t f = 0; f < d->n_fields; f++)
                        for (unsigned i = 0; i < r->n_values; i++)
                                if (!strcmp(r->values[i].name, d->fields[f]))
                                        series_add(&d->raw[f], r->ts_ms, r->values[i].v);
        }
}

/* ---- drawing ---- */

#define W        1100
#define ML       78          /* left margin: the y axis labels */
#define MR       24
#define TOP      56
#define PANEL_H  250
#define RAW_H    130
#define GAP      64
#define STRIP_H  10

static const char *tier_colour(int l) {
        switch (l) {
        case FH_LEVEL_RED: return "#d62728";
        case FH_LEVEL_ORANGE: return "#ff7f0e";
        case FH_LEVEL_YELLOW: return "#d4a900";
        case FH_LEVEL_BLUE: return "#1f77b4";
        default: return "#999999";
        }
}

static void xml_text(fh_buf *b, const char *s) {
        for (; *s; s++)
                switch (*s) {
                case '&': fh_buf_puts(b, "&amp;"); break;
                case '<': fh_buf_puts(b, "&lt;"); break;
                case '>': fh_buf_puts(b, "&gt;"); break;
                case '"': fh_buf_puts(b, "&quot;"); break;
                default: fh_buf_putc(b, *s);
                }
}

typedef struct frame {
        int64_t t0, t1;
        double x0, x1;             /* pixels */
        double y0, y1;             /* pixels: top and bottom of the plot area */
        double v0, v1;             /* values at the bottom and the top */
        int tz;
} frame;

static double fx(const frame *f, int64_t t) {
        return f->x0 + (double) (t - f->t0) / (double) (f->t1 - f->t0) * (f->x1 - f->x0);
}

static double fy(const frame *f, double v) {
        return f->y1 - (v - f->v0) / (f->v1 - f->v0) * (f->y1 - f->y0);
}

static double nice_step(double range, int want) {
        double raw = range / want, mag = pow(10, floor(log10(raw))), r = raw / mag;
        return mag * (r <= 1 ? 1 : r <= 2 ? 2 : r <= 2.5 ? 2.5 : r <= 5 ? 5 : 10);
}

static void value_range(double lo, double hi, double *ret_lo, double *ret_hi) {
        if (!isfinite(lo) || !isfinite(hi)) {
                lo = 0;
                hi = 1;
        }
        if (lo > 0)
                lo = 0;
        if (hi <= lo)
                hi = lo + 1;
        double step = nice_step(hi - lo, 5);
        *ret_lo = floor(lo / step) * step;
        *ret_hi = ceil(hi * 1.08 / step) * step;
}

static void y_axis(fh_buf *b, const frame *f) {
        double step = nice_step(f->v1 - f->v0, 5);

        for (double v = f->v0; v <= f->v1 + step / 1000; v += step) {
                double y = fy(f, v);
                fh_buf_printf(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#e4e4e4\"/>\n", f->x0, y,
                              f->x1, y);
                fh_buf_printf(b, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\" class=\"tick\">%.6g</text>\n",
                              f->x0 - 6, y + 4, fabs(v) < step / 1e6 ? 0.0 : v);
        }
        fh_buf_printf(b, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"none\" stroke=\"#888\"/>\n",
                      f->x0, f->y0, f->x1 - f->x0, f->y1 - f->y0);
}

static void time_axis(fh_buf *b, const frame *f, bool labels) {
        static const int64_t steps[] = { 60000, 300000, 600000, 900000, 1800000, 3600000, 7200000, 10800000,
                                         21600000, 43200000, 86400000, 172800000, 604800000, 2592000000LL,
                                         7776000000LL, 31536000000LL };
        int64_t span = f->t1 - f->t0, step = steps[FH_ARRAY_SIZE(steps) - 1];
        int64_t off = (int64_t) f->tz * 60000;

        for (size_t i = 0; i < FH_ARRAY_SIZE(steps); i++)
                if (span / steps[i] <= 10) {
                        step = steps[i];
                        break;
                }
        for (int64_t t = (fh_floor_div(f->t0 + off, step) + 1) * step - off; t < f->t1; t += step) {
                double x = fx(f, t);
                char lt[FH_TIME_LOCAL_MAX];
                fh_buf_printf(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#eeeeee\"/>\n", x, f->y0,
                              x, f->y1);
                if (!labels)
                        continue;
                fh_time_format_local(t, f->tz, lt);
                /* "2023-07-30 14:05": the date where a day starts or the
                 * ticks are days apart, else the time alone. */
                const char *s = lt + 11;
                char both[FH_TIME_LOCAL_MAX];
                if (step >= 86400000)
                        snprintf(both, sizeof(both), "%.10s", lt), s = both;
                else if (!strcmp(lt + 11, "00:00") || t - step < f->t0)
                        snprintf(both, sizeof(both), "%.5s %s", lt + 5, lt + 11), s = both;
                fh_buf_printf(b, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" class=\"tick\">%s</text>\n", x,
                              f->y1 + 16, s);
        }
}

/* A polyline that breaks where a value is missing. */
/* More points than pixels (years of hourly data): per pixel column, the
 * first, lowest, highest and last value, which draws the same envelope
 * in a fraction of the bytes. */
static void path_dense(fh_buf *b, const frame *f, const int64_t *ts, const double *v, size_t n, const char *attrs) {
        bool open = false, any = false;

        for (size_t i = 0; i < n;) {
                if (!isfinite(v[i])) {
                        open = false;
                        i++;
                        continue;
                }
                long col = lround(fx(f, ts[i]));
                double first = v[i], lo = v[i], hi = v[i], last = v[i];
                size_t j = i + 1;
                for (; j < n && isfinite(v[j]) && lround(fx(f, ts[j])) == col; j++) {
                        lo = fmin(lo, v[j]);
                        hi = fmax(hi, v[j]);
                        last = v[j];
                }
                if (!any) {
                        fh_buf_printf(b, "<path %s d=\"", attrs);
                        any = true;
                }
                fh_buf_printf(b, "%s%ld %.1f", open ? "L" : "M", col, fy(f, first));
                if (hi != lo)
                        fh_buf_printf(b, "L%ld %.1fL%ld %.1f", col, fy(f, lo), col, fy(f, hi));
                if (last != first || hi != lo)
                        fh_buf_printf(b, "L%ld %.1f", col, fy(f, last));
                open = true;
                i = j;
        }
        if (any)
                fh_buf_puts(b, "\"/>\n");
}

static void path(fh_buf *b, const frame *f, const int64_t *ts, const double *v, size_t n, bool step_after,
                 const char *attrs) {
        bool open = false, any = false;

        if ((double) n > 2 * (f->x1 - f->x0)) {
                path_dense(b, f, ts, v, n, attrs);
                return;
        }
        for (size_t i = 0; i < n; i++) {
                if (!isfinite(v[i])) {
                        open = false;
                        continue;
                }
                if (!any) {
                        fh_buf_printf(b, "<path %s d=\"", attrs);
                        any = true;
                }
                double x = fx(f, ts[i]), y = fy(f, v[i]);
                if (open && step_after)
                        fh_buf_printf(b, "H%.1f", x);
                fh_buf_printf(b, "%s%.1f %.1f", open ? "L" : "M", x, y);
                open = true;
        }
        if (any)
                fh_buf_puts(b, "\"/>\n");
}

/* Legend items flow left to right and wrap; *y moves down a line. */
static void legend_item(fh_buf *b, double *x, double *y, const char *colour, const char *dash, const char *text) {
        /* An estimate of the text's width: CJK glyphs are about twice as wide. */
        double w = 0;
        for (const unsigned char *p = (const unsigned char *) text; *p; p++)
                if (*p < 0x80)
                        w += 6.8;
                else if ((*p & 0xC0) == 0xC0)
                        w += 12.5;
        if (*x > ML && *x + 27 + w > W - MR) {
                *x = ML;
                *y += 16;
        }
        fh_buf_printf(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" stroke-width=\"2\"%s%s%s/>\n",
                      *x, *y - 4, *x + 22, *y - 4, colour, dash ? " stroke-dasharray=\"" : "", dash ? dash : "",
                      dash ? "\"" : "");
        fh_buf_printf(b, "<text x=\"%.1f\" y=\"%.1f\" class=\"legend\">", *x + 27, *y);
        xml_text(b, text);
        fh_buf_puts(b, "</text>\n");
        *x += 27 + w + 16;
}

static void range_of(const double *v, size_t n, double *lo, double *hi) {
        for (size_t i = 0; i < n; i++)
                if (isfinite(v[i])) {
                        *lo = fmin(*lo, v[i]);
                        *hi = fmax(*hi, v[i]);
                }
}

static void draw_panel(fh_buf *b, const req_data *d, size_t k, const fh_plot_runs *runs, const frame *fr0, double top) {
        const panel_data *p = &d->panels[k];
        const fh_plot_panel *pp = &d->req->panels[k];
        frame f = *fr0;
        char lt[FH_TIME_RFC3339_MAX], lt2[FH_TIME_RFC3339_MAX];

        f.y1 = top + PANEL_H;
        /* Title: which rule set, which rule. */
        fh_buf_printf(b, "<g class=\"panel\" data-run=\"");
        xml_text(b, runs->labels ? runs->labels[pp->run] : runs->rule_dirs[pp->run]);
        fh_buf_printf(b, "\" data-rule=\"");
        xml_text(b, pp->rule);
        fh_buf_printf(b, "\">\n<text x=\"%d\" y=\"%.1f\" class=\"ptitle\">", ML, top + 12);
        if (runs->labels) {
                xml_text(b, runs->labels[pp->run]);
                fh_buf_puts(b, " (");
                xml_text(b, runs->rule_dirs[pp->run]);
                fh_buf_puts(b, "): ");
        }
        xml_text(b, pp->rule);
        if (p->rule && p->rule->title) {
                fh_buf_puts(b, " ");
                xml_text(b, p->rule->title);
        }
        if (p->rule && p->rule->report) {
                fh_buf_puts(b, " · report ");
                xml_text(b, p->rule->report->source);
        }
        fh_buf_puts(b, "</text>\n");
        if (!p->rule || p->n == 0) {
                fh_buf_printf(b, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" class=\"note\">", (f.x0 + f.x1) / 2,
                              top + PANEL_H / 2);
                xml_text(b, !p->rule ? "this rule set has no such rule for this station" : "no evaluation in this range");
                fh_buf_puts(b, "</text>\n</g>\n");
                return;
        }

        /* The axis is the report's, with the thresholds drawn against it.
         * A tier on another quantity (a 6 h sum beside a 3 h report) is
         * drawn when it shares that scale; one in other units (a rate
         * beside a level, seconds beside minutes) is only named. */
        double lo = INFINITY, hi = -INFINITY;
        bool drawn[LINES_MAX];
        if (p->rule->report)
                range_of(p->report, p->n, &lo, &hi);
        for (size_t j = 0; j < p->n_lines; j++)
                if (!p->lines[j].has_qty)
                        range_of(p->thr[j], p->n, &lo, &hi);
        bool own_scale = !isfinite(lo);
        double span = isfinite(lo) ? fmax(hi - lo, fabs(hi) * 0.1 + 1e-9) : 0;
        for (size_t j = 0; j < p->n_lines; j++) {
                double qlo = INFINITY, qhi = -INFINITY;
                drawn[j] = !p->lines[j].has_qty;
                if (drawn[j])
                        continue;
                range_of(p->qty[j], p->n, &qlo, &qhi);
                range_of(p->thr[j], p->n, &qlo, &qhi);
                if (own_scale || (isfinite(qlo) && qlo >= lo - 2 * span && qhi <= hi + 2 * span)) {
                        drawn[j] = true;
                        lo = fmin(lo, qlo);
                        hi = fmax(hi, qhi);
                }
        }
        /* Amounts start at 0; a level of 212 m is read against its own range. */
        if (isfinite(lo) && lo > 0 && lo < 0.5 * hi)
                lo = 0;
        if (isfinite(lo) && lo > 0) {
                double pad = (hi - lo) * 0.1 + fabs(hi) * 1e-6;
                lo -= pad;
                hi += pad;
                double step = nice_step(hi - lo, 5);
                f.v0 = floor(lo / step) * step;
                f.v1 = ceil(hi / step) * step;
        } else
                value_range(lo, hi, &f.v0, &f.v1);

        /* Legend first: it may take two lines, the plot goes below it. */
        double lx = ML, ly = top + 30;
        if (p->rule->report)
                legend_item(b, &lx, &ly, "#222", NULL, p->rule->report->source);
        char val[LINES_MAX][32];
        bool varies[LINES_MAX];
        for (size_t j = 0; j < p->n_lines; j++) {
                const line_def *ld = &p->lines[j];
                double first = NAN, last = NAN;
                varies[j] = false;
                for (size_t i = 0; i < p->n; i++)
                        if (isfinite(p->thr[j][i])) {
                                if (isnan(first))
                                        first = p->thr[j][i];
                                else if (p->thr[j][i] != first)
                                        varies[j] = true;
                                last = p->thr[j][i];
                        }
                val[j][0] = 0;
                if (isfinite(last) && !varies[j])
                        snprintf(val[j], sizeof(val[j]), "%.6g", last);
                char text[400];
                if (ld->has_qty)
                        snprintf(text, sizeof(text), "%s%s", ld->label, drawn[j] ? "" : " (other units: not drawn)");
                else
                        snprintf(text, sizeof(text), "%s %s %s", fh_level_name(ld->level), ld->label,
                                 isfinite(last) ? (varies[j] ? "(varies)" : val[j]) : "(missing)");
                legend_item(b, &lx, &ly, tier_colour(ld->level), ld->has_qty ? NULL : "7 4", text);
        }
        f.y0 = ly + 12 + STRIP_H + 4;

        /* Where each tier was active: a strip above the plot and a light
         * shade behind it, one rectangle per stretch of one level. */
        for (size_t i = 0; i < p->n;) {
                size_t j = i + 1;
                while (j < p->n && p->level[j] == p->level[i])
                        j++;
                int64_t a = p->ts[i], z = j < p->n ? p->ts[j] : p->ts[p->n - 1];
                if (p->level[i] != FH_LEVEL_NONE && z > a) {
                        const char *c = tier_colour(p->level[i]);
                        fh_time_format_rfc3339(a, f.tz, lt);
                        fh_time_format_rfc3339(z, f.tz, lt2);
                        fh_buf_printf(b, "<rect class=\"active\" data-tier=\"%s\" data-from=\"%s\" data-to=\"%s\" "
                                      "x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"%s\" fill-opacity=\"0.16\"/>\n",
                                      fh_level_name(p->level[i]), lt, lt2, fx(&f, a), f.y0, fx(&f, z) - fx(&f, a),
                                      f.y1 - f.y0, c);
                        fh_buf_printf(b, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%d\" fill=\"%s\"/>\n",
                                      fx(&f, a), f.y0 - STRIP_H - 2, fx(&f, z) - fx(&f, a), STRIP_H, c);
                }
                i = j;
        }
        y_axis(b, &f);
        time_axis(b, &f, true);

        /* Quantities, thresholds, and the report on top. */
        for (size_t j = 0; j < p->n_lines; j++) {
                const line_def *ld = &p->lines[j];
                const char *c = tier_colour(ld->level);
                char attrs[240];
                if (!drawn[j])
                        continue;
                if (ld->has_qty) {
                        snprintf(attrs, sizeof(attrs),
                                 "class=\"quantity\" data-tier=\"%s\" fill=\"none\" stroke=\"%s\" stroke-width=\"1.2\" stroke-opacity=\"0.8\"",
                                 fh_level_name(ld->level), c);
                        path(b, &f, p->ts, p->qty[j], p->n, true, attrs);
                }
                snprintf(attrs, sizeof(attrs),
                         "class=\"threshold\" data-tier=\"%s\" data-value=\"%s\" fill=\"none\" stroke=\"%s\" stroke-width=\"1.5\" stroke-dasharray=\"7 4\"",
                         fh_level_name(ld->level), varies[j] ? "varies" : val[j], c);
                path(b, &f, p->ts, p->thr[j], p->n, true, attrs);
        }
        if (p->rule->report)
                path(b, &f, p->ts, p->report, p->n, true,
                     "class=\"report\" fill=\"none\" stroke=\"#222\" stroke-width=\"1.8\"");
        fh_buf_puts(b, "</g>\n");
}

static void draw_raw(fh_buf *b, const req_data *d, size_t k, const frame *fr0, double top, bool labels) {
        const series *s = &d->raw[k];
        frame f = *fr0;
        double lo = INFINITY, hi = -INFINITY;
        bool bars = d->kind == FH_KIND_RAIN;

        f.y0 = top + 20;
        f.y1 = top + RAW_H;
        for (size_t i = 0; i < s->n; i++) {
                lo = fmin(lo, s->v[i]);
                hi = fmax(hi, s->v[i]);
        }
        if (!bars && isfinite(lo)) {
                /* A level hovering around 215 m is read against its own range. */
                double pad = (hi - lo) * 0.1 + 1e-9;
                f.v0 = lo - pad;
                f.v1 = hi + pad;
                double step = nice_step(f.v1 - f.v0, 4);
                f.v0 = floor(f.v0 / step) * step;
                f.v1 = ceil(f.v1 / step) * step;
        } else
                value_range(lo, hi, &f.v0, &f.v1);
        fh_buf_printf(b, "<g class=\"readings\" data-field=\"%s\">\n<text x=\"%d\" y=\"%.1f\" class=\"ptitle\">readings: %s</text>\n",
                      d->fields[k], ML, top + 12, d->fields[k]);
        y_axis(b, &f);
        time_axis(b, &f, labels);
        if (bars && (double) s->n > f.x1 - f.x0) {
                /* Thinner than a pixel: one bar per pixel column, as high as
                 * the largest reading in it. */
                for (size_t i = 0; i < s->n;) {
                        long col = lround(fx(&f, s->ts[i]));
                        double top_v = s->v[i];
                        size_t j = i + 1;
                        for (; j < s->n && lround(fx(&f, s->ts[j])) == col; j++)
                                top_v = fmax(top_v, s->v[j]);
                        i = j;
                        if (top_v <= 0)
                                continue;
                        double y = fy(&f, top_v);
                        fh_buf_printf(b, "<rect class=\"reading\" x=\"%ld\" y=\"%.1f\" width=\"1\" height=\"%.1f\" fill=\"#4a90c2\"/>\n",
                                      col - 1, y, fy(&f, 0) - y);
                }
        } else if (bars) {
                /* Each bar spans the time since the previous reading: the
                 * rain it holds fell then. */
                for (size_t i = 0; i < s->n; i++) {
                        int64_t a = i ? s->ts[i - 1] : s->ts[i] - (s->n > 1 ? s->ts[1] - s->ts[0] : 60000);
                        double x0 = fmax(fx(&f, a), f.x0), x1 = fx(&f, s->ts[i]);
                        double w = fmax(x1 - x0 - 0.5, 0.8), y = fy(&f, fmax(s->v[i], 0));
                        if (s->v[i] <= 0)
                                continue;
                        fh_buf_printf(b, "<rect class=\"reading\" x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"#4a90c2\"/>\n",
                                      x1 - w, y, w, fy(&f, 0) - y);
                }
        } else
                path(b, &f, s->ts, s->v, s->n, false, "class=\"reading\" fill=\"none\" stroke=\"#4a90c2\" stroke-width=\"1.3\"");
        fh_buf_puts(b, "</g>\n");
}

static int write_svg(const char *cmd, const req_data *d, const fh_plot_runs *runs) {
        int64_t t0 = INT64_MAX, t1 = INT64_MIN;
        fh_buf b = FH_BUF_NULL;

        /* The range asked for, narrowed to where there is data. */
        for (size_t k = 0; k < d->req->n_panels; k++)
                for (size_t i = 0; i < d->panels[k].n; i++) {
                        t0 = FH_MIN(t0, d->panels[k].ts[i]);
                        t1 = FH_MAX(t1, d->panels[k].ts[i]);
                }
        for (size_t k = 0; k < d->n_fields; k++)
                for (size_t i = 0; i < d->raw[k].n; i++) {
                        t0 = FH_MIN(t0, d->raw[k].ts[i]);
                        t1 = FH_MAX(t1, d->raw[k].ts[i]);
                }
        if (t0 == INT64_MAX) {
                fprintf(stderr, "fenghuo %s: no readings of %s in the range to plot\n", cmd, d->req->sensor);
                return -1;
        }
        if (t1 <= t0)
                t1 = t0 + 60000;
        int64_t margin = (t1 - t0) / 50;
        frame f = { .t0 = t0 - margin, .t1 = t1 + margin, .x0 = ML, .x1 = W - MR, .tz = runs->cfg->tz_offset_min };
        double h = TOP + (double) d->req->n_panels * (PANEL_H + GAP) + (double) d->n_fields * (RAW_H + GAP) + 10;
        char a[FH_TIME_LOCAL_MAX], z[FH_TIME_LOCAL_MAX];

        fh_buf_printf(&b, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                          "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%.0f\" viewBox=\"0 0 %d %.0f\" "
                          "font-family=\"'Noto Sans CJK SC', 'WenQuanYi Micro Hei', sans-serif\" font-size=\"12\">\n"
                          "<style>.tick{fill:#555;font-size:11px}.legend{fill:#222}.ptitle{fill:#222;font-weight:bold}"
                          ".note{fill:#888;font-size:14px}.title{font-size:16px;font-weight:bold}</style>\n"
                          "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n",
                      W, h, W, h);
        fh_time_format_local(t0, f.tz, a);
        fh_time_format_local(t1, f.tz, z);
        fh_buf_puts(&b, "<title>");
        xml_text(&b, d->req->sensor);
        fh_buf_puts(&b, "</title>\n");
        fh_buf_printf(&b, "<text x=\"%d\" y=\"24\" class=\"title\">", ML);
        xml_text(&b, d->req->sensor);
        if (d->station_found) {
                fh_buf_puts(&b, " ");
                xml_text(&b, d->station_name);
        }
        fh_buf_printf(&b, "</text>\n<text x=\"%d\" y=\"42\" class=\"tick\">%s – %s (UTC%+03d:%02d). Shaded: the level of the alert "
                          "after each evaluation; dashed: each tier's threshold.</text>\n",
                      ML, a, z, f.tz / 60, abs(f.tz % 60));
        double top = TOP;
        for (size_t k = 0; k < d->req->n_panels; k++, top += PANEL_H + GAP) {
                draw_panel(&b, d, k, runs, &f, top);
        }
        for (size_t k = 0; k < d->n_fields; k++, top += RAW_H + GAP)
                draw_raw(&b, d, k, &f, top, true);
        fh_buf_puts(&b, "</svg>\n");

        FILE *o = d->req->path ? fopen(d->req->path, "we") : stdout;
        int r = 0;
        if (!o) {
                fprintf(stderr, "fenghuo %s: cannot write %s: %s\n", cmd, d->req->path, strerror(errno));
                fh_buf_free(&b);
                return -1;
        }
        fwrite(b.data, 1, b.len, o);
        if (fflush(o) != 0 || ferror(o)) {
                fprintf(stderr, "fenghuo %s: cannot write %s: %s\n", cmd, d->req->path ? d->req->path : "the plot",
                        strerror(errno));
                r = -1;
        }
        if (o != stdout && fclose(o) != 0 && r == 0) {
                fprintf(stderr, "fenghuo %s: cannot write %s: %s\n", cmd, d->req->path, strerror(errno));
                r = -1;
        }
        fh_buf_free(&b);
        return r;
}

static void req_data_free(req_data *d) {
        for (size_t k = 0; k < FH_PLOT_PANELS_MAX; k++) {
                panel_data *p = &d->panels[k];
                free(p->ts);
                free(p->report);
                free(p->level);
                for (size_t i = 0; i < LINES_MAX; i++) {
                        free(p->thr[i]);
                        free(p->qty[i]);
                }
        }
        for (size_t k = 0; k < FIELDS_MAX; k++) {
                free(d->raw[k].ts);
                free(d->raw[k].v);
        }
}

int fh_plot_write(const char *cmd, int fd, const fh_plot_runs *runs, fh_plot_request *req, size_t n_req) {
        capture c = { .n = n_req };
        fh_engine *engines[FH_PLOT_PANELS_MAX] = { 0 };
        int r = 0;

        if (runs->n > FH_PLOT_PANELS_MAX)
                return -1;
        c.rq = calloc(n_req ? n_req : 1, sizeof(*c.rq));
        if (!c.rq)
                fh_oom();
        for (size_t q = 0; q < n_req; q++) {
                req_data *d = &c.rq[q];
                d->req = &req[q];
                d->from = req[q].from;
                d->to = req[q].to;
        }
        for (size_t run = 0; run < runs->n && r == 0; run++) {
                fh_diags diags = FH_DIAGS_NULL;
                if (fh_load_engine(runs->rule_dirs[run], runs->stations, runs->cfg, &engines[run], &diags) < 0) {
                        fh_diags_sort(&diags);
                        fh_print_diags(&diags);
                        r = -1;
                }
                fh_diags_clear(&diags);
                if (r < 0)
                        break;
                for (size_t q = 0; q < n_req; q++) {
                        req_data *d = &c.rq[q];
                        const fh_station *st = fh_registry_find(fh_engine_registry(engines[run]), d->req->sensor,
                                                                strlen(d->req->sensor));
                        if (st && !d->station_found) {
                                d->station_found = true;
                                d->kind = st->kind;
                                snprintf(d->station_name, sizeof(d->station_name), "%.*s", (int) st->name_len, st->name);
                        }
                        for (size_t k = 0; k < d->req->n_panels; k++)
                                if (d->req->panels[k].run == run)
                                        panel_setup(&d->panels[k], d, engines[run], d->req->panels[k].rule);
                }
                c.run = run;
                fh_engine_set_eval_cb(engines[run], on_eval, &c);
                if ((run > 0 || runs->rewind_first) && lseek(fd, 0, SEEK_SET) < 0) {
                        fprintf(stderr, "fenghuo %s: cannot read the input again: %s\n", cmd, strerror(errno));
                        r = -1;
                        break;
                }
                unsigned long long lines;
                /* Readings are the same for every rule set: take them once. */
                fh_feed_opts opts = { .on_reading = run == 0 ? on_reading : NULL, .userdata = &c };
                int k = fh_feed(fd, &engines[run], 1, &opts, &lines);
                if (k < 0) {
                        fprintf(stderr, "fenghuo %s: failed to read the input after line %llu: %s\n", cmd, lines,
                                strerror(-k));
                        r = -1;
                }
        }
        for (size_t q = 0; q < n_req && r == 0; q++)
                if (write_svg(cmd, &c.rq[q], runs) < 0)
                        r = -1;
        for (size_t q = 0; q < n_req; q++)
                req_data_free(&c.rq[q]);
        free(c.rq);
        /* The panels point into the engines' rules until here. */
        for (size_t run = 0; run < runs->n; run++)
                fh_engine_free(engines[run]);
        return r;
}
