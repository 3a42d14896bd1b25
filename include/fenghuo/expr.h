/* Rule expressions (SPEC §3.1), compiled once at load time into a flat
 * postfix program that a tiny stack machine evaluates per reading.
 *
 * Missing values are NaN: every input value is finite (the reading parser
 * rejects the rest), IEEE arithmetic carries NaN through, and comparisons
 * with NaN are false, which is exactly SPEC's rule (`!=` is special-cased).
 * Booleans are 0.0 / 1.0 and are never missing. */
#ifndef FENGHUO_EXPR_H
#define FENGHUO_EXPR_H

#include "fenghuo/common.h"
#include "fenghuo/diag.h"

typedef enum fh_opcode {
        FH_OP_CONST,       /* push k */
        FH_OP_STATION,     /* push station attribute `arg` (index into fh_symbols.attrs); text or absent -> NaN */
        FH_OP_AGE,         /* push seconds since the sensor's latest reading */
        /* Field access: `field` = index into fh_symbols.fields; for the
         * windowed ones `arg` = index into fh_symbols.windows. */
        FH_OP_LAST,
        FH_OP_SUM,
        FH_OP_AVG,
        FH_OP_MIN,
        FH_OP_MAX,
        FH_OP_COUNT,
        FH_OP_DELTA,
        FH_OP_RATE,
        /* unary */
        FH_OP_NEG, FH_OP_ABS, FH_OP_SQRT, FH_OP_ATAN_DEG, FH_OP_NOT,
        /* binary */
        FH_OP_ADD, FH_OP_SUB, FH_OP_MUL, FH_OP_DIV,
        FH_OP_LT, FH_OP_LE, FH_OP_GT, FH_OP_GE, FH_OP_EQ, FH_OP_NE,
        FH_OP_AND, FH_OP_OR,
        FH_OP__MAX
} fh_opcode;

typedef struct fh_insn {
        uint8_t op;        /* fh_opcode */
        uint16_t field;
        uint32_t arg;
        double k;
} fh_insn;

typedef enum fh_type { FH_TYPE_NUMBER, FH_TYPE_BOOL } fh_type;

/* A field name in an expression and where it stands in its file, so that
 * a name the station kind does not declare is reported at its place. */
typedef struct fh_field_ref {
        uint16_t field;    /* index into fh_symbols.fields */
        unsigned line;
        unsigned col;
} fh_field_ref;

typedef struct fh_program {
        fh_insn *code;
        uint32_t n;
        uint32_t max_stack;
        fh_type type;
        bool uses_age;
        char *source;      /* the expression text, for messages and hashing */
        fh_field_ref *refs; /* every field read, in source order */
        uint32_t n_refs;
} fh_program;

/* A window a rule reads: a field and a length. Shared by all rules so that
 * one window store serves every rule that reads the same field. */
typedef struct fh_window_key {
        uint16_t field;
        int64_t ms;
} fh_window_key;

/* Names interned across a whole rule set. */
typedef struct fh_symbols {
        char **fields;  size_t n_fields;
        char **attrs;   size_t n_attrs;
        fh_window_key *windows; size_t n_windows;
} fh_symbols;

void fh_symbols_clear(fh_symbols *s);

/* Where the expression text starts in its file, so errors point at the
 * exact column: line/col of the first character of `src`. For a scalar that
 * spans lines the position is best-effort (start of the scalar). */
typedef struct fh_srcpos {
        const char *file;
        unsigned line;
        unsigned col;
} fh_srcpos;

/* Compiles src[0..len). Returns 0 and *ret (caller frees with
 * fh_program_free), or -EINVAL after adding every error found to diags.
 * `want` is the type the context needs (level -> BOOL, report -> NUMBER);
 * a mismatch is an error. Names are interned into syms. */
int fh_expr_compile(const char *src, size_t len, fh_type want, const fh_srcpos *pos,
                    fh_symbols *syms, fh_program **ret, fh_diags *diags);
fh_program *fh_program_free(fh_program *p);

/* What the evaluator asks of the world: the engine implements these with a
 * sensor's window stores; tests with plain arrays. */
typedef struct fh_eval_env {
        double (*field)(void *ctx, fh_opcode op, unsigned field, unsigned window);
        double (*station)(void *ctx, unsigned attr);
        double (*age)(void *ctx);
        void *ctx;
} fh_eval_env;

/* A comparison inside a condition, its operands as views into the
 * condition's code: evaluate them with fh_program_eval(), never free them.
 * `plot` draws `sum(rain_mm, 3h) >= 50` as the report against a line at 50. */
typedef struct fh_compare {
        fh_opcode op;              /* FH_OP_LT ... FH_OP_NE */
        fh_program left, right;
} fh_compare;

/* Every comparison in p, in code order; returns how many there are (only
 * the first max are stored). */
size_t fh_program_compares(const fh_program *p, fh_compare *out, size_t max);
/* Whether a and b compute the same thing: the same code. */
bool fh_program_same(const fh_program *a, const fh_program *b);

/* Runs p; NaN means missing. Booleans come back as 0.0 or 1.0. */
double fh_program_eval(const fh_program *p, const fh_eval_env *env);

#endif
