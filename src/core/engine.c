#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fenghuo/engine.h"
#include "fenghuo/timeutil.h"
#include "engine-internal.h"

static const char *const event_names[FH_EVENT__MAX] = { "raised", "escalated", "deescalated", "cleared" };

const char *fh_event_name(fh_event e) {
        return (unsigned) e < FH_EVENT__MAX ? event_names[e] : "?";
}

const char *fh_end_reason_name(fh_end_reason r) {
        static const char *const names[FH_END__MAX] = {
                [FH_END_RULE_CHANGED] = "rule_changed",
                [FH_END_RULE_REMOVED] = "rule_removed",
                [FH_END_STATION_REMOVED] = "station_removed",
                [FH_END_RULE_UNMATCHED] = "rule_unmatched",
        };
        return (unsigned) r < FH_END__MAX ? names[r] : NULL;
}

/* ---- recent timestamps, for duplicate detection ----
 *
 * A sorted ring (power-of-two capacity): a late timestamp goes in by moving
 * the shorter side, so a stream replayed newest first moves nothing. 4
 * bytes a timestamp: at 5-s reporting a sensor holds 732 of them. */

static inline size_t recent_slot(const fh_recent *r, size_t i) {
        return (r->off + i) & (r->cap - 1);
}

static inline int64_t recent_get(const fh_recent *r, size_t i) {
        size_t k = recent_slot(r, i);
        uint64_t d = r->v[k];
        if (r->hi)
                d |= (uint64_t) r->hi[k] << 32;
        return r->base + (int64_t) d;
}

static inline void recent_move(fh_recent *r, size_t to, size_t from) {
        size_t a = recent_slot(r, to), b = recent_slot(r, from);
        r->v[a] = r->v[b];
        if (r->hi)
                r->hi[a] = r->hi[b];
}

/* The number of timestamps <= ts. */
static size_t recent_rank(const fh_recent *r, int64_t ts) {
        size_t lo = 0, hi = r->len;

        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                if (recent_get(r, mid) <= ts)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        return lo;
}

static bool recent_contains(const fh_recent *r, int64_t ts) {
        size_t i = recent_rank(r, ts);
        return i > 0 && recent_get(r, i - 1) == ts;
}

static void recent_make_room(fh_recent *r) {
        if (r->len < r->cap)
                return;
        size_t ncap = r->cap ? r->cap * 2 : 4;
        uint32_t *v = fh_malloc(ncap * sizeof(*v));
        uint32_t *hi = r->hi ? fh_malloc(ncap * sizeof(*hi)) : NULL;
        for (size_t i = 0; i < r->len; i++) {
                v[i] = r->v[recent_slot(r, i)];
                if (hi)
                        hi[i] = r->hi[recent_slot(r, i)];
        }
        free(r->v);
        free(r->hi);
        r->v = v;
        r->hi = hi;
        r->cap = ncap;
        r->off = 0;
}

static void recent_forget_before(fh_recent *r, int64_t horizon) {
        while (r->len > 0 && recent_get(r, 0) < horizon) {
                r->off = (r->off + 1) & (r->cap - 1);
                r->len--;
        }
}

/* Makes ts - base fit: everything kept is at or after horizon, so base
 * moves there; a lateness over 2^31 ms can still leave ts too far, and then
 * the times get their high bits. Horizons only grow between clears. */
static void recent_fit(fh_recent *r, int64_t ts, int64_t horizon) {
        if (r->len == 0) {
                r->base = horizon;
        } else if (ts < r->base || (uint64_t) (ts - r->base) > UINT32_MAX) {
                recent_forget_before(r, horizon);
                for (size_t i = 0; i < r->len; i++) {
                        int64_t t = recent_get(r, i);
                        size_t k = recent_slot(r, i);
                        r->v[k] = (uint32_t) (uint64_t) (t - horizon);
                        if (r->hi)
                                r->hi[k] = (uint32_t) ((uint64_t) (t - horizon) >> 32);
                }
                r->base = horizon;
        }
        if (!r->hi && (uint64_t) (ts - r->base) > UINT32_MAX) {
                r->hi = fh_calloc(r->cap, sizeof(*r->hi));
        }
}

/* Keeps the sorted timestamps from horizon on (see recent_horizon). */
void fh_recent_insert(fh_recent *r, int64_t ts, int64_t horizon) {
        if (ts < horizon)
                return;   /* it would be forgotten at once */
        recent_make_room(r);
        recent_fit(r, ts, horizon);
        /* In order, the common case, appends without a search. */
        size_t i = r->len == 0 || recent_get(r, r->len - 1) < ts ? r->len : recent_rank(r, ts);
        if (i < r->len - i) {
                r->off = (r->off - 1) & (r->cap - 1);
                for (size_t j = 0; j < i; j++)
                        recent_move(r, j, j + 1);
        } else {
                for (size_t j = r->len; j-- > i;)
                        recent_move(r, j + 1, j);
        }
        size_t k = recent_slot(r, i);
        r->v[k] = (uint32_t) (uint64_t) (ts - r->base);
        if (r->hi)
                r->hi[k] = (uint32_t) ((uint64_t) (ts - r->base) >> 32);
        r->len++;
        recent_forget_before(r, horizon);
}

int64_t fh_recent_at(const fh_recent *r, size_t i) {
        return recent_get(r, i);
}

/* The timestamps a sensor keeps: those within lateness of its latest, for
 * duplicates (older readings are dropped before they are looked up), and
 * one rate window more, so that a late reading's rate is judged on
 * everything around it. */
int64_t fh_recent_horizon(const fh_engine *e, int64_t latest) {
        return latest - e->cfg.lateness_ms - (e->cfg.max_readings_per_minute ? FH_ENGINE_RATE_WINDOW_MS : 0);
}

/* Whether accepting ts would put more than max readings in some 60 s: that
 * is, whether ts and max held timestamps next to it in time order span
 * less than the window. The held ones already respect the cap, so only the
 * max + 1 runs that include ts can break it (one run for in-order ts). */
static bool over_rate(const fh_recent *r, int64_t ts, uint32_t max) {
        size_t n = r->len + 1;

        if (max == 0 || n <= max)
                return false;
        /* Where ts would go; at the end for an in-order reading. */
        size_t p = ts > recent_get(r, r->len - 1) ? r->len : recent_rank(r, ts);
#define AT(i) ((i) == p ? ts : recent_get(r, (i) < p ? (i) : (i) - 1))
        for (size_t j = p >= max ? p - max : 0; j <= p && j + max < n; j++)
                if (AT(j + max) - AT(j) < FH_ENGINE_RATE_WINDOW_MS)
                        return true;
#undef AT
        return false;
}

/* ---- profiles: the layout shared by sensors with the same rules ---- */

static uint64_t hash_u32s(const uint32_t *v, size_t n) {
        return fh_fnv1a(FH_FNV1A_INIT, v, n * sizeof(*v));
}

static uint8_t op_needs(fh_opcode op) {
        switch (op) {
        case FH_OP_SUM:
        case FH_OP_AVG:
                return FH_WIN_SUM;
        case FH_OP_MIN:
                return FH_WIN_MIN;
        case FH_OP_MAX:
                return FH_WIN_MAX;
        default:
                return 0;
        }
}

static void profile_note_program(fh_profile *p, const fh_symbols *syms, const fh_program *prog) {
        if (!prog)
                return;
        for (uint32_t i = 0; i < prog->n; i++) {
                const fh_insn *in = &prog->code[i];
                unsigned field;

                if (in->op < FH_OP_LAST || in->op > FH_OP_RATE)
                        continue;
                field = in->op == FH_OP_LAST ? in->field : syms->windows[in->arg].field;
                if (p->store_of_field[field] < 0) {
                        p->store_of_field[field] = (int16_t) p->n_stores;
                        p->stores = fh_realloc(p->stores, (p->n_stores + 1) * sizeof(*p->stores));
                        p->stores[p->n_stores++] = (fh_store_layout) { .field = (uint16_t) field };
                }
                if (in->op == FH_OP_LAST)
                        continue;

                fh_store_layout *sl = &p->stores[p->store_of_field[field]];
                int w = p->win_of_window[in->arg];
                if (w < 0) {
                        w = sl->n_win++;
                        sl->win_ms = fh_realloc(sl->win_ms, sl->n_win * sizeof(*sl->win_ms));
                        sl->needs = fh_realloc(sl->needs, sl->n_win * sizeof(*sl->needs));
                        sl->win_ms[w] = syms->windows[in->arg].ms;
                        sl->needs[w] = 0;
                        p->win_of_window[in->arg] = (int16_t) w;
                }
                sl->needs[w] |= op_needs((fh_opcode) in->op);
        }
}

static fh_profile *profile_new(const fh_ruleset *rs, const uint32_t *rules, size_t n, uint64_t hash) {
        fh_profile *p = fh_calloc(1, sizeof(*p));
        const fh_symbols *syms = &rs->syms;

        p->hash = hash;
        p->n_rules = (uint32_t) n;
        p->rules = fh_malloc(n * sizeof(*p->rules));
        memcpy(p->rules, rules, n * sizeof(*p->rules));
        p->store_of_field = fh_malloc((syms->n_fields + 1) * sizeof(*p->store_of_field));
        p->win_of_window = fh_malloc((syms->n_windows + 1) * sizeof(*p->win_of_window));
        for (size_t i = 0; i < syms->n_fields; i++)
                p->store_of_field[i] = -1;
        for (size_t i = 0; i < syms->n_windows; i++)
                p->win_of_window[i] = -1;
        for (size_t i = 0; i < n; i++) {
                const fh_rule *r = &rs->rules[rules[i]];
                for (int l = FH_LEVEL_BLUE; l < FH_LEVEL__MAX; l++)
                        profile_note_program(p, syms, r->levels[l]);
                profile_note_program(p, syms, r->report);
        }
        for (uint32_t i = 0; i < p->n_stores; i++) {
                const char *name = syms->fields[p->stores[i].field];
                p->stores[i].name = name;
                p->stores[i].name_len = strlen(name);
        }
        return p;
}

static fh_profile *profile_free(fh_profile *p) {
        if (!p)
                return NULL;
        for (uint32_t i = 0; i < p->n_stores; i++) {
                free(p->stores[i].win_ms);
                free(p->stores[i].needs);
        }
        free(p->stores);
        free(p->rules);
        free(p->store_of_field);
        free(p->win_of_window);
        free(p);
        return NULL;
}

static fh_profile *profile_intern(fh_model *e, const uint32_t *rules, size_t n) {
        uint64_t h = hash_u32s(rules, n);
        size_t mask = e->profile_mask;

        for (size_t i = h & mask;; i = (i + 1) & mask) {
                fh_profile *p = e->profile_slots[i];
                if (!p)
                        break;
                if (p->hash == h && p->n_rules == n && memcmp(p->rules, rules, n * sizeof(*rules)) == 0)
                        return p;
        }
        if ((e->n_profiles + 1) * 2 > mask + 1) {
                size_t nmask = mask * 2 + 1;
                fh_profile **slots = fh_calloc(nmask + 1, sizeof(*slots));
                for (size_t i = 0; i < e->n_profiles; i++) {
                        fh_profile *q = e->profiles[i];
                        size_t j = q->hash & nmask;
                        while (slots[j])
                                j = (j + 1) & nmask;
                        slots[j] = q;
                }
                free(e->profile_slots);
                e->profile_slots = slots;
                e->profile_mask = mask = nmask;
        }
        fh_profile *p = profile_new(e->rs, rules, n, h);
        size_t j = h & mask;
        while (e->profile_slots[j])
                j = (j + 1) & mask;
        e->profile_slots[j] = p;
        e->profiles = fh_realloc(e->profiles, (e->n_profiles + 1) * sizeof(*e->profiles));
        e->profiles[e->n_profiles++] = p;
        return p;
}

/* ---- binding rules to stations ---- */

static bool match_value_equals(const fh_match_value *mv, const fh_attr *a) {
        if (mv->is_number && a->is_number)
                return mv->num == a->num;
        if (!mv->is_number && !a->is_number)
                return strlen(mv->str) == a->len && memcmp(mv->str, a->str, a->len) == 0;
        return false;
}

static bool rule_matches(const fh_rule *r, const int *match_cols, const fh_station *st) {
        if (r->kind != st->kind)
                return false;
        for (size_t m = 0; m < r->n_match; m++) {
                const fh_attr *a = fh_station_attr(st, match_cols[m]);
                bool ok = false;

                if (!a)
                        return false;
                for (size_t k = 0; k < r->match[m].n_values && !ok; k++)
                        ok = match_value_equals(&r->match[m].values[k], a);
                if (!ok)
                        return false;
        }
        return true;
}

void fh_sensor_init(fh_sensor *s, const fh_profile *p) {
        s->prof = p;
        s->latest = FH_TIME_NONE;
        s->stores = p->n_stores ? fh_calloc(p->n_stores, sizeof(*s->stores)) : NULL;
        for (uint32_t i = 0; i < p->n_stores; i++) {
                const fh_store_layout *sl = &p->stores[i];
                fh_store_init(&s->stores[i], sl->field, sl->win_ms, sl->needs, sl->n_win);
        }
        s->pairs = p->n_rules ? fh_malloc(p->n_rules * sizeof(*s->pairs)) : NULL;
        for (uint32_t i = 0; i < p->n_rules; i++)
                fh_pair_reset(&s->pairs[i]);
}

void fh_pair_reset(fh_pair *p) {
        p->level = FH_LEVEL_NONE;
        for (int l = 0; l < FH_LEVEL__MAX; l++)
                p->run[l] = FH_TIME_NONE;
        p->wait = FH_TIME_NONE;
        p->raised = FH_TIME_NONE;
        p->last_event = 0;
        p->last_previous = 0;
        p->last_ts = FH_TIME_NONE;
        p->last_value = NAN;
}

void fh_sensor_clear(fh_sensor *s) {
        s->latest = FH_TIME_NONE;
        s->recent.off = s->recent.len = 0;
        for (uint32_t i = 0; i < s->prof->n_stores; i++)
                fh_store_reset(&s->stores[i]);
        for (uint32_t i = 0; i < s->prof->n_rules; i++)
                fh_pair_reset(&s->pairs[i]);
}

static void sensor_done(fh_sensor *s) {
        if (!s->prof)
                return;
        for (uint32_t i = 0; i < s->prof->n_stores; i++)
                fh_store_done(&s->stores[i]);
        free(s->stores);
        free(s->pairs);
        free(s->recent.v);
        free(s->recent.hi);
}

static void warn_missing_columns(fh_model *e, const fh_rule *r, fh_diags *diags) {
        const fh_symbols *syms = &e->rs->syms;
        const fh_program *progs[FH_LEVEL__MAX + 1];
        size_t np = 0;

        for (int l = FH_LEVEL_BLUE; l < FH_LEVEL__MAX; l++)
                if (r->levels[l])
                        progs[np++] = r->levels[l];
        if (r->report)
                progs[np++] = r->report;
        if (r->message)
                for (size_t i = 0; i < r->message->n_parts; i++) {
                        const fh_tpl_part *p = &r->message->parts[i];
                        if (p->kind == FH_TPL_STATION && fh_registry_column(e->reg, p->text, p->len) < 0)
                                fh_diags_warn(diags, r->file, r->line, r->col,
                                              "rule '%s' has {station.%.*s} in its message, but the station registry "
                                              "has no column '%.*s': it renders empty",
                                              r->id, (int) p->len, p->text, (int) p->len, p->text);
                }
        for (size_t k = 0; k < np; k++)
                for (uint32_t i = 0; i < progs[k]->n; i++) {
                        const fh_insn *in = &progs[k]->code[i];
                        if (in->op == FH_OP_STATION && e->attr_col[in->arg] < 0)
                                fh_diags_warn(diags, r->file, r->line, r->col,
                                              "rule '%s' reads station.%s, but the station registry has no column '%s': it is always missing",
                                              r->id, syms->attrs[in->arg], syms->attrs[in->arg]);
                }
}

static int model_bind(fh_model *e, fh_diags *diags) {
        const fh_ruleset *rs = e->rs;
        const fh_registry *reg = e->reg;
        int **match_cols = fh_calloc(rs->n_rules, sizeof(*match_cols));
        uint32_t *list = fh_malloc((rs->n_rules + 1) * sizeof(*list));
        int r = 0;

        e->attr_col = fh_malloc((rs->syms.n_attrs + 1) * sizeof(*e->attr_col));
        for (size_t i = 0; i < rs->syms.n_attrs; i++)
                e->attr_col[i] = fh_registry_column(reg, rs->syms.attrs[i], strlen(rs->syms.attrs[i]));

        for (size_t i = 0; i < rs->n_rules; i++) {
                const fh_rule *rule = &rs->rules[i];
                match_cols[i] = fh_malloc((rule->n_match + 1) * sizeof(int));
                for (size_t m = 0; m < rule->n_match; m++)
                        match_cols[i][m] = fh_registry_column(reg, rule->match[m].attr, strlen(rule->match[m].attr));
        }

        e->bind = fh_calloc(rs->n_rules + 1, sizeof(*e->bind));
        e->prof_of = fh_calloc(reg->n_stations + 1, sizeof(*e->prof_of));
        e->profile_mask = 15;
        e->profile_slots = fh_calloc(e->profile_mask + 1, sizeof(*e->profile_slots));

        for (size_t si = 0; si < reg->n_stations; si++) {
                const fh_station *st = &reg->stations[si];
                size_t n = 0;

                for (size_t i = 0; i < rs->n_rules; i++)
                        if (rule_matches(&rs->rules[i], match_cols[i], st))
                                list[n++] = (uint32_t) i;
                fh_profile *p = profile_intern(e, list, n);
                e->prof_of[si] = p;
                for (size_t k = 0; k < n; k++) {
                        fh_rule_bind *b = &e->bind[list[k]];
                        if (b->n == b->cap) {
                                b->cap = b->cap ? b->cap * 2 : 16;
                                b->sensor = fh_realloc(b->sensor, b->cap * sizeof(*b->sensor));
                                b->pair = fh_realloc(b->pair, b->cap * sizeof(*b->pair));
                        }
                        b->sensor[b->n] = (uint32_t) si;
                        b->pair[b->n] = (uint32_t) k;
                        b->n++;
                }
        }

        for (size_t i = 0; i < rs->n_rules; i++) {
                const fh_rule *rule = &rs->rules[i];
                if (e->bind[i].n == 0)
                        fh_diags_warn(diags, rule->file, rule->line, rule->col,
                                      "rule '%s' applies to no station (kind %s%s)", rule->id,
                                      fh_kind_name(rule->kind), rule->n_match ? ", with its match" : "");
                else
                        warn_missing_columns(e, rule, diags);
                if (rule->uses_age) {
                        e->age_rules = fh_realloc(e->age_rules, (e->n_age_rules + 1) * sizeof(*e->age_rules));
                        e->age_rules[e->n_age_rules++] = (uint32_t) i;
                }
        }

        for (size_t i = 0; i < rs->n_rules; i++)
                free(match_cols[i]);
        free(match_cols);
        free(list);
        return r;
}

static fh_model *model_free(fh_model *m) {
        if (!m)
                return NULL;
        if (m->bind)
                for (size_t i = 0; i < m->rs->n_rules; i++) {
                        free(m->bind[i].sensor);
                        free(m->bind[i].pair);
                }
        free(m->bind);
        for (size_t i = 0; i < m->n_profiles; i++)
                profile_free(m->profiles[i]);
        free(m->profiles);
        free(m->profile_slots);
        free(m->prof_of);
        free(m->age_rules);
        free(m->attr_col);
        fh_ruleset_free(m->rs);
        fh_registry_free(m->reg);
        free(m);
        return NULL;
}

int fh_model_new(fh_model **ret, fh_ruleset *rules, fh_registry *stations, fh_diags *diags) {
        fh_model *m;
        int r;

        if (!rules || !stations || !rules->finished) {
                fh_ruleset_free(rules);
                fh_registry_free(stations);
                return -EINVAL;
        }
        m = fh_calloc(1, sizeof(*m));
        m->refs = 1;
        m->rs = rules;
        m->reg = stations;
        r = model_bind(m, diags);
        if (r < 0) {
                model_free(m);
                return r;
        }
        *ret = m;
        return 0;
}

fh_model *fh_model_ref(fh_model *m) {
        if (m)
                __atomic_add_fetch(&m->refs, 1, __ATOMIC_RELAXED);
        return m;
}

fh_model *fh_model_unref(fh_model *m) {
        /* Release, then acquire by the last one: every engine's reads of
         * the model happen before it is freed, on whichever thread. */
        if (m && __atomic_sub_fetch(&m->refs, 1, __ATOMIC_ACQ_REL) == 0)
                model_free(m);
        return NULL;
}

const fh_ruleset *fh_model_rules(const fh_model *m) {
        return m->rs;
}

const fh_registry *fh_model_registry(const fh_model *m) {
        return m->reg;
}

int fh_engine_new_shared(fh_engine **ret, fh_model *m, const fh_engine_config *cfg) {
        static const fh_engine_config defaults = FH_ENGINE_CONFIG_DEFAULT;
        fh_engine *e;

        if (!m)
                return -EINVAL;
        e = fh_calloc(1, sizeof(*e));
        e->m = fh_model_ref(m);
        e->rs = m->rs;
        e->reg = m->reg;
        e->bind = m->bind;
        e->age_rules = m->age_rules;
        e->n_age_rules = m->n_age_rules;
        e->attr_col = m->attr_col;
        e->sensors = fh_calloc(m->reg->n_stations + 1, sizeof(*e->sensors));
        e->cfg = cfg ? *cfg : defaults;
        if (e->cfg.tick_ms <= 0)
                e->cfg.tick_ms = defaults.tick_ms;
        if (e->cfg.lateness_ms < 0)
                e->cfg.lateness_ms = 0;
        if (e->cfg.max_ticks_per_advance < 2)
                e->cfg.max_ticks_per_advance = defaults.max_ticks_per_advance;
        e->clock = FH_TIME_NONE;
        *ret = e;
        return 0;
}

int fh_engine_new(fh_engine **ret, fh_ruleset *rules, fh_registry *stations,
                  const fh_engine_config *cfg, fh_diags *diags) {
        fh_model *m;
        int r = fh_model_new(&m, rules, stations, diags);

        if (r < 0)
                return r;
        r = fh_engine_new_shared(ret, m, cfg);
        fh_model_unref(m);
        return r;
}

fh_model *fh_engine_model(const fh_engine *e) {
        return e->m;
}

fh_sensor *fh_engine_sensor(fh_engine *e, size_t i) {
        fh_sensor *s = e->sensors[i];

        if (s)
                return s;
        s = fh_calloc(1, sizeof(*s));
        s->st = &e->reg->stations[i];
        fh_sensor_init(s, e->m->prof_of[i]);
        e->sensors[i] = s;
        e->n_live++;
        return s;
}

void fh_engine_sensor_drop(fh_engine *e, size_t i) {
        fh_sensor *s = e->sensors[i];

        if (!s)
                return;
        sensor_done(s);
        free(s);
        e->sensors[i] = NULL;
        e->n_live--;
}

fh_engine *fh_engine_free(fh_engine *e) {
        if (!e)
                return NULL;
        for (size_t i = 0; e->sensors && i < e->reg->n_stations; i++)
                fh_engine_sensor_drop(e, i);
        free(e->sensors);
        fh_model_unref(e->m);
        free(e);
        return NULL;
}

void fh_engine_set_alert_cb(fh_engine *e, fh_alert_fn fn, void *userdata) {
        e->alert_cb = fn;
        e->alert_data = userdata;
}

void fh_engine_set_eval_cb(fh_engine *e, fh_eval_fn fn, void *userdata) {
        e->eval_cb = fn;
        e->eval_data = userdata;
}

/* ---- evaluation ---- */

typedef struct evctx {
        const fh_engine *e;
        const fh_sensor *s;
        int64_t t;
} evctx;

static double ev_field(void *ctx, fh_opcode op, unsigned field, unsigned window) {
        const evctx *c = ctx;
        const fh_profile *p = c->s->prof;

        if (op == FH_OP_LAST)
                return fh_store_query(&c->s->stores[p->store_of_field[field]], op, 0, c->t);
        field = c->e->rs->syms.windows[window].field;
        return fh_store_query(&c->s->stores[p->store_of_field[field]], op,
                              (unsigned) p->win_of_window[window], c->t);
}

static double ev_station(void *ctx, unsigned attr) {
        const evctx *c = ctx;
        const fh_attr *a = fh_station_attr(c->s->st, c->e->attr_col[attr]);

        return a && a->is_number ? a->num : NAN;
}

static double ev_age(void *ctx) {
        const evctx *c = ctx;

        return (double) (c->t - c->s->latest) / 1000.0;
}

static inline int64_t elapsed(int64_t since, int64_t t) {
        /* An evaluation can come earlier than the one that started a run (a
         * tick ahead of a slow sensor's next reading): count that as 0. */
        return t > since ? t - since : 0;
}

static void emit(fh_engine *e, const fh_alert_sink *out, const fh_sensor *s, const fh_rule *rule, fh_pair *p,
                 const fh_eval_env *env, fh_level to, int64_t t) {
        fh_alert a = {
                .rule = rule,
                .station = s->st,
                .level = to,
                .previous = (fh_level) p->level,
                .ts_ms = t,
                .value = rule->report ? fh_program_eval(rule->report, env) : NAN,
        };

        if (p->level == FH_LEVEL_NONE) {
                a.event = FH_EVENT_RAISED;
                p->raised = t;
        } else if (to == FH_LEVEL_NONE)
                a.event = FH_EVENT_CLEARED;
        else
                a.event = to > p->level ? FH_EVENT_ESCALATED : FH_EVENT_DEESCALATED;
        if (a.event != FH_EVENT_RAISED && p->last_ts != FH_TIME_NONE) {
                a.has_prior = true;
                a.prior_event = (fh_event) p->last_event;
                a.prior_ts = p->last_ts;
        }
        a.raised_ms = p->raised;
        p->last_event = (uint8_t) a.event;
        p->last_previous = (uint8_t) a.previous;
        p->last_ts = t;
        p->last_value = a.value;
        p->level = (uint8_t) to;
        if (to == FH_LEVEL_NONE)
                p->raised = FH_TIME_NONE;

        e->stats.events[a.event]++;
        if (out->fn)
                out->fn(out->userdata, &a);
}

void fh_engine_eval_pair(fh_engine *e, const fh_alert_sink *out, fh_sensor *s, uint32_t pi, int64_t t) {
        const fh_rule *rule = &e->rs->rules[s->prof->rules[pi]];
        fh_pair *p = &s->pairs[pi];
        evctx c = { e, s, t };
        fh_eval_env env = { ev_field, ev_station, ev_age, &c };
        int raw = FH_LEVEL_NONE, ready = FH_LEVEL_NONE;

        e->stats.evaluations++;
        for (int l = FH_LEVEL_RED; l >= FH_LEVEL_BLUE; l--) {
                if (!rule->levels[l])
                        continue;
                if (fh_program_eval(rule->levels[l], &env) > 0.5) {
                        if (p->run[l] == FH_TIME_NONE)
                                p->run[l] = t;
                        if (raw == FH_LEVEL_NONE)
                                raw = l;
                        if (ready == FH_LEVEL_NONE && elapsed(p->run[l], t) >= rule->for_ms)
                                ready = l;
                } else
                        p->run[l] = FH_TIME_NONE;
        }

        if (ready > p->level) {
                p->wait = FH_TIME_NONE;
                emit(e, out, s, rule, p, &env, (fh_level) ready, t);
        } else if (raw < p->level) {
                if (p->wait == FH_TIME_NONE)
                        p->wait = t;
                if (elapsed(p->wait, t) >= rule->clear_after_ms) {
                        p->wait = FH_TIME_NONE;
                        emit(e, out, s, rule, p, &env, (fh_level) raw, t);
                }
        } else
                p->wait = FH_TIME_NONE;

        if (e->eval_cb) {
                fh_evaluation ev = { rule, s->st, t, (fh_level) raw, (fh_level) p->level, &env };
                e->eval_cb(e->eval_data, &ev);
        }
}

static void tick_at(fh_engine *e, const fh_alert_sink *out, int64_t b) {
        for (size_t k = 0; k < e->n_age_rules; k++) {
                const fh_rule_bind *bd = &e->bind[e->age_rules[k]];
                for (size_t i = 0; i < bd->n; i++) {
                        fh_sensor *s = e->sensors[bd->sensor[i]];
                        if (s && s->latest != FH_TIME_NONE)
                                fh_engine_eval_pair(e, out, s, bd->pair[i], b);
                }
        }
}

/* Evaluates the tick boundaries b with from < b <= to, in order. */
static void run_ticks(fh_engine *e, const fh_alert_sink *out, int64_t from, int64_t to) {
        int64_t tick = e->cfg.tick_ms;

        if (e->n_age_rules == 0 || to <= from)
                return;
        int64_t first = (fh_floor_div(from, tick) + 1) * tick;
        int64_t last = fh_floor_div(to, tick) * tick;
        if (first > last)
                return;
        uint64_t n = (uint64_t) ((last - first) / tick) + 1;
        uint64_t cap = e->cfg.max_ticks_per_advance;

        if (n <= cap) {
                for (int64_t b = first; b <= last; b += tick)
                        tick_at(e, out, b);
                return;
        }
        /* A jump too long to walk (a clock years off): the first half shows
         * what silence does, the last half where it ends up. */
        uint64_t half = cap / 2;
        for (uint64_t i = 0; i < half; i++)
                tick_at(e, out, first + (int64_t) i * tick);
        e->stats.ticks_skipped += n - 2 * half;
        for (uint64_t i = half; i > 0; i--)
                tick_at(e, out, last - (int64_t) (i - 1) * tick);
}

void fh_engine_tick(fh_engine *e, int64_t now_ms) {
        if (e->clock == FH_TIME_NONE) {
                e->clock = now_ms;
                return;
        }
        if (now_ms <= e->clock)
                return;
        fh_alert_sink out = { e->alert_cb, e->alert_data };
        run_ticks(e, &out, e->clock, now_ms);
        e->clock = now_ms;
}

static int store_for_value(const fh_profile *p, const fh_value *v) {
        for (uint32_t i = 0; i < p->n_stores; i++)
                if (p->stores[i].name_len == v->name_len && memcmp(p->stores[i].name, v->name, v->name_len) == 0)
                        return (int) i;
        return -1;
}

/* Whether ts would overfill one of the stores ks[0..n) (-1: no store). A
 * store below the cap has room whatever ts is: only a full one is searched. */
static bool over_samples(const fh_sensor *s, const int *ks, unsigned n, uint32_t max, int64_t ts) {
        if (max == 0)
                return false;
        for (unsigned i = 0; i < n; i++) {
                const fh_store *st = ks[i] >= 0 ? &s->stores[ks[i]] : NULL;
                if (st && st->r.len >= max && fh_store_len_with(st, ts) > max)
                        return true;
        }
        return false;
}

fh_outcome fh_engine_ingest(fh_engine *e, const fh_reading *r) {
        return fh_engine_ingest_to(e, r, e->alert_cb, e->alert_data);
}

fh_outcome fh_engine_ingest_to(fh_engine *e, const fh_reading *r, fh_alert_fn fn, void *userdata) {
        const fh_alert_sink out = { fn, userdata };
        const fh_station *st = fh_registry_find(e->reg, r->sensor, r->sensor_len);
        int64_t ts = r->ts_ms;
        bool late = false;

        e->last_station = st;
        if (!st) {
                e->stats.rejected[FH_REJECT_UNKNOWN_SENSOR]++;
                return FH_OUTCOME_UNKNOWN_SENSOR;
        }
        fh_sensor *s = fh_engine_sensor(e, st->index);
        const fh_profile *p = s->prof;

        /* In-order readings, the common case, never search the history. */
        if (s->latest != FH_TIME_NONE && ts <= s->latest) {
                if (s->latest - ts > e->cfg.lateness_ms) {
                        e->stats.dropped++;
                        return FH_OUTCOME_DROPPED;
                }
                if (ts == s->latest || recent_contains(&s->recent, ts)) {
                        e->stats.duplicates++;
                        return FH_OUTCOME_DUPLICATE;
                }
                late = true;
        }
        int ks[FH_VALUES_MAX];   /* the store of each value, -1 for none */
        for (unsigned i = 0; i < r->n_values; i++)
                ks[i] = store_for_value(p, &r->values[i]);
        /* The caps come before anything changes: a rejected reading leaves
         * no trace but its counter. */
        if (over_rate(&s->recent, ts, e->cfg.max_readings_per_minute)) {
                e->stats.rejected[FH_REJECT_RATE_LIMITED]++;
                return FH_OUTCOME_RATE_LIMITED;
        }
        if (over_samples(s, ks, r->n_values, e->cfg.max_window_samples, ts)) {
                e->stats.rejected[FH_REJECT_WINDOW_FULL]++;
                return FH_OUTCOME_WINDOW_FULL;
        }

        if (e->cfg.clock == FH_CLOCK_EVENT) {
                if (e->clock == FH_TIME_NONE)
                        e->clock = ts;
                else if (ts > e->clock) {
                        run_ticks(e, &out, e->clock, ts);
                        e->clock = ts;
                }
        }

        e->stats.accepted++;
        if (late) {
                e->stats.late++;
                fh_recent_insert(&s->recent, ts, fh_recent_horizon(e, s->latest));
                for (unsigned i = 0; i < r->n_values; i++)
                        if (ks[i] >= 0)
                                fh_store_insert_late(&s->stores[ks[i]], ts, r->values[i].v);
        } else {
                s->latest = ts;
                fh_recent_insert(&s->recent, ts, fh_recent_horizon(e, ts));
                for (uint32_t k = 0; k < p->n_stores; k++)
                        fh_store_advance(&s->stores[k], ts);
                for (unsigned i = 0; i < r->n_values; i++)
                        if (ks[i] >= 0)
                                fh_store_push(&s->stores[ks[i]], ts, r->values[i].v);
        }

        for (uint32_t i = 0; i < p->n_rules; i++)
                fh_engine_eval_pair(e, &out, s, i, s->latest);
        return late ? FH_OUTCOME_LATE : FH_OUTCOME_ACCEPTED;
}

const fh_station *fh_engine_last_station(const fh_engine *e) {
        return e->last_station;
}

int64_t fh_engine_clock(const fh_engine *e) {
        return e->clock;
}

void fh_engine_set_clock(fh_engine *e, int64_t now_ms) {
        e->clock = now_ms;
}

fh_reject fh_outcome_reject(fh_outcome o) {
        switch (o) {
        case FH_OUTCOME_UNKNOWN_SENSOR:
                return FH_REJECT_UNKNOWN_SENSOR;
        case FH_OUTCOME_RATE_LIMITED:
                return FH_REJECT_RATE_LIMITED;
        case FH_OUTCOME_WINDOW_FULL:
                return FH_REJECT_WINDOW_FULL;
        default:
                return FH_REJECT_NONE;
        }
}

void fh_engine_explain(const fh_engine *e, const fh_reading *r, fh_outcome o, char *why, size_t why_len) {
        if (why_len == 0)
                return;
        switch (o) {
        case FH_OUTCOME_UNKNOWN_SENSOR:
                snprintf(why, why_len, "sensor \"%s\" is not in the station registry", r->sensor);
                break;
        case FH_OUTCOME_RATE_LIMITED:
                snprintf(why, why_len, "sensor \"%s\" sent more than %" PRIu32 " readings within 60 s "
                         "(max_readings_per_minute)", r->sensor, e->cfg.max_readings_per_minute);
                break;
        case FH_OUTCOME_WINDOW_FULL:
                snprintf(why, why_len, "sensor \"%s\" holds %" PRIu32 " samples of a field in its windows "
                         "(max_window_samples)", r->sensor, e->cfg.max_window_samples);
                break;
        default:
                why[0] = '\0';
        }
}

void fh_engine_count_reject(fh_engine *e, fh_reject why) {
        if ((unsigned) why < FH_REJECT__MAX)
                e->stats.rejected[why]++;
}

const fh_engine_stats *fh_engine_stats_get(const fh_engine *e) {
        return &e->stats;
}

const fh_ruleset *fh_engine_rules(const fh_engine *e) {
        return e->rs;
}

const fh_registry *fh_engine_registry(const fh_engine *e) {
        return e->reg;
}

const fh_engine_config *fh_engine_config_get(const fh_engine *e) {
        return &e->cfg;
}

size_t fh_engine_rule_stations(const fh_engine *e, size_t rule_index, const fh_station ***ret) {
        const fh_rule_bind *b = &e->bind[rule_index];
        const fh_station **v = fh_malloc((b->n + 1) * sizeof(*v));

        for (size_t i = 0; i < b->n; i++)
                v[i] = &e->reg->stations[b->sensor[i]];
        *ret = v;
        return b->n;
}

void fh_engine_foreach_active(const fh_engine *e, fh_alert_fn fn, void *userdata) {
        for (size_t ri = 0; ri < e->rs->n_rules; ri++) {
                const fh_rule_bind *b = &e->bind[ri];
                const fh_rule *rule = &e->rs->rules[ri];

                for (size_t i = 0; i < b->n; i++) {
                        const fh_sensor *s = e->sensors[b->sensor[i]];
                        if (!s)
                                continue;
                        const fh_pair *p = &s->pairs[b->pair[i]];
                        if (p->level == FH_LEVEL_NONE)
                                continue;
                        fh_alert a = {
                                .event = (fh_event) p->last_event,
                                .rule = rule,
                                .station = s->st,
                                .level = (fh_level) p->level,
                                .previous = (fh_level) p->last_previous,
                                .ts_ms = p->last_ts,
                                .raised_ms = p->raised,
                                .value = p->last_value,
                        };
                        fn(userdata, &a);
                }
        }
}

/* What becomes of old's pair (rule, s) in ne: FH_END_NONE when ne keeps
 * its state (same rule id and hash bound to the same station id). */
static fh_end_reason pair_fate(const fh_engine *ne, const fh_rule *rule, const fh_station *st) {
        const fh_station *nst = fh_registry_find(ne->reg, st->id, st->id_len);
        const fh_rule *nr = NULL;

        for (size_t i = 0; i < ne->rs->n_rules && !nr; i++)
                if (!strcmp(ne->rs->rules[i].id, rule->id))
                        nr = &ne->rs->rules[i];
        if (!nr)
                return FH_END_RULE_REMOVED;
        if (nr->hash != rule->hash)
                return FH_END_RULE_CHANGED;
        if (!nst)
                return FH_END_STATION_REMOVED;
        const fh_profile *p = ne->m->prof_of[nst->index];
        for (uint32_t k = 0; k < p->n_rules; k++)
                if (&ne->rs->rules[p->rules[k]] == nr)
                        return FH_END_NONE;
        return FH_END_RULE_UNMATCHED;
}

void fh_engine_end_orphans(fh_engine *old, const fh_engine *ne, int64_t now_ms) {
        for (size_t ri = 0; ri < old->rs->n_rules; ri++) {
                const fh_rule_bind *b = &old->bind[ri];
                const fh_rule *rule = &old->rs->rules[ri];

                for (size_t i = 0; i < b->n; i++) {
                        const fh_sensor *s = old->sensors[b->sensor[i]];
                        if (!s)
                                continue;
                        fh_pair *p = &s->pairs[b->pair[i]];
                        if (p->level == FH_LEVEL_NONE)
                                continue;
                        fh_end_reason why = pair_fate(ne, rule, s->st);
                        if (why == FH_END_NONE)
                                continue;
                        fh_alert a = {
                                .event = FH_EVENT_CLEARED,
                                .rule = rule,
                                .station = s->st,
                                .level = FH_LEVEL_NONE,
                                .previous = (fh_level) p->level,
                                /* A reading up to the future limit ahead of
                                 * the clock may have made the last event. */
                                .ts_ms = now_ms > p->last_ts ? now_ms : p->last_ts,
                                .raised_ms = p->raised,
                                .value = NAN,
                                .reason = why,
                                .has_prior = p->last_ts != FH_TIME_NONE,
                                .prior_event = (fh_event) p->last_event,
                                .prior_ts = p->last_ts,
                        };
                        fh_pair_reset(p);
                        old->stats.events[FH_EVENT_CLEARED]++;
                        if (old->alert_cb)
                                old->alert_cb(old->alert_data, &a);
                }
        }
}

size_t fh_engine_memory(const fh_engine *e) {
        size_t m = sizeof(*e) + e->reg->n_stations * sizeof(*e->sensors);
        for (size_t i = 0; i < e->reg->n_stations; i++) {
                const fh_sensor *s = e->sensors[i];
                if (!s)
                        continue;
                m += sizeof(*s) + s->recent.cap * (sizeof(uint32_t) + (s->recent.hi ? sizeof(uint32_t) : 0)) +
                     s->prof->n_rules * sizeof(fh_pair);
                for (uint32_t k = 0; k < s->prof->n_stores; k++)
                        m += fh_store_memory(&s->stores[k]);
        }
        return m;
}

size_t fh_engine_samples(const fh_engine *e) {
        size_t n = 0;
        for (size_t i = 0; i < e->reg->n_stations; i++) {
                const fh_sensor *s = e->sensors[i];
                for (uint32_t k = 0; s && k < s->prof->n_stores; k++)
                        n += s->stores[k].r.len;
        }
        return n;
}
