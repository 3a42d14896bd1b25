/* Rule files (SPEC §3): YAML text in, a validated rule set out. No I/O: the
 * caller reads each file and hands in its bytes (see src/cli/load.c). */
#ifndef FENGHUO_RULES_H
#define FENGHUO_RULES_H

#include "fenghuo/common.h"
#include "fenghuo/diag.h"
#include "fenghuo/expr.h"

#define FH_RULES_MAX        10000
#define FH_MATCH_VALUES_MAX 256
#define FH_FIELD_DECLS_MAX  1024
#define FH_UNIT_MAX         32

typedef struct fh_match_value {
        bool is_number;    /* YAML plain scalar that parses fully as a number */
        double num;
        char *str;         /* the scalar text, always set */
} fh_match_value;

typedef struct fh_match {
        char *attr;        /* a registry column name */
        fh_match_value *values;  /* any one of them must equal the attribute */
        size_t n_values;
} fh_match;

/* A message template, split at load time so rendering is a walk. */
typedef enum fh_tpl_kind {
        FH_TPL_TEXT,       /* literal text ("{{" and "}}" already unescaped) */
        FH_TPL_SENSOR,
        FH_TPL_STATION,    /* text = the column name */
        FH_TPL_TITLE,
        FH_TPL_LEVEL,
        FH_TPL_LEVEL_CN,
        FH_TPL_VALUE,
        FH_TPL_TS,
        FH_TPL_UNIT,       /* the declared unit of the field `report` reads */
} fh_tpl_kind;

typedef struct fh_tpl_part {
        fh_tpl_kind kind;
        char *text;
        size_t len;
} fh_tpl_part;

typedef struct fh_template {
        fh_tpl_part *parts;
        size_t n_parts;
        unsigned unit_line;        /* where the first {unit} is, 0 when none */
        unsigned unit_col;
} fh_template;

typedef struct fh_rule {
        char *id;
        char *title;               /* NULL when absent */
        fh_kind kind;
        fh_match *match;
        size_t n_match;
        fh_program *levels[FH_LEVEL__MAX]; /* indexed by fh_level; [0] unused; NULL when absent */
        fh_program *report;        /* NULL when absent */
        int64_t for_ms;
        int64_t clear_after_ms;
        fh_template *message;      /* NULL when absent (a default text is used) */
        char *unit;                /* the declared unit of the one field `report`
                                      reads; NULL when undeclared or not one field */
        bool uses_age;             /* any level or report uses age() */
        uint64_t hash;             /* of the whole definition: a reload keeps the
                                      state of a rule whose hash is unchanged */
        char *file;                /* where it was defined, for messages */
        unsigned line;
        unsigned col;
} fh_rule;

/* A field readings of one station kind carry, with its unit, declared
 * under `fields:` (rules/fields.yaml). */
typedef struct fh_field_decl {
        fh_kind kind;
        char *name;
        char *unit;                /* "" for a number without unit */
        char *file;                /* where it was declared, for messages */
        unsigned line;
        unsigned col;
} fh_field_decl;

typedef struct fh_ruleset {
        fh_rule *rules;            /* sorted by id (byte order) after fh_ruleset_finish */
        size_t n_rules;
        size_t cap_rules;
        fh_symbols syms;
        bool finished;
        fh_field_decl *decls;      /* in load order */
        size_t n_decls;
        /* Kinds that have a `fields:` entry: only their rules' field names
         * are checked, so rule sets without declarations keep loading. */
        bool declared[FH_KIND__MAX];
} fh_ruleset;

int fh_ruleset_new(fh_ruleset **ret);
fh_ruleset *fh_ruleset_free(fh_ruleset *rs);

/* Adds the rules and field declarations of one file (top-level keys
 * `rules:` and `fields:`, each optional, at least one present). Every error of the file goes to diags, not
 * just the first; rules with errors are not added. Returns 0, or -EINVAL
 * when the file had any error. */
int fh_ruleset_parse(fh_ruleset *rs, const char *file, const char *text, size_t len, fh_diags *diags);

/* After all files: sorts by id, reports ids defined twice (across files,
 * pointing at the second definition), checks each field a rule reads
 * against the fields declared for its kind (an unknown one is an error, at
 * its place, with a "did you mean"; a kind without declarations gets a
 * warning that its field names are not checked) and resolves {unit}.
 * 0 or -EINVAL. */
int fh_ruleset_finish(fh_ruleset *rs, fh_diags *diags);

const fh_rule *fh_ruleset_find(const fh_ruleset *rs, const char *id);
/* The declaration of field name[0..len) for kind, or NULL. */
const fh_field_decl *fh_ruleset_field(const fh_ruleset *rs, fh_kind kind, const char *name, size_t len);

#endif
