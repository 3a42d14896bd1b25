/* The station registry of SPEC §2, parsed from CSV text (RFC 4180). No I/O:
 * the caller reads the file and hands in its bytes. */
#ifndef FENGHUO_REGISTRY_H
#define FENGHUO_REGISTRY_H

#include "fenghuo/common.h"
#include "fenghuo/diag.h"

#define FH_REGISTRY_STATIONS_MAX 1000000
#define FH_REGISTRY_COLUMNS_MAX  128
#define FH_REGISTRY_CELL_MAX     1024

typedef struct fh_attr {
        bool present;      /* false for an empty cell */
        bool is_number;    /* the cell parsed fully as a finite number */
        double num;        /* when is_number */
        const char *str;   /* the cell text (also for numbers), NUL-terminated */
        size_t len;
} fh_attr;

typedef struct fh_station {
        const char *id;    /* NUL-terminated, 1-64 chars of [A-Za-z0-9._:-] */
        size_t id_len;
        fh_kind kind;
        const char *name;
        size_t name_len;
        fh_attr *attrs;    /* one per registry column (see fh_registry.columns) */
        uint32_t index;    /* position in fh_registry.stations */
} fh_station;

typedef struct fh_registry {
        char **columns;          /* every column of the header, in file order,
                                    id/kind/name included */
        size_t n_columns;
        fh_station *stations;    /* sorted by id, byte order (SPEC §3.2 order) */
        size_t n_stations;
        /* private: id hash index, string storage */
        uint32_t *hash;
        size_t hash_mask;
        char *arena;
} fh_registry;

/* Parses a registry. Returns 0 and *ret, or -EINVAL with every problem
 * added to diags (file:line:col). A UTF-8 BOM is ignored; CRLF or LF line
 * ends. Errors: missing id/kind/name column, duplicate or non-identifier
 * column name, a row with the wrong number of cells, unterminated quote, bad
 * or duplicate id, unknown kind, empty name, caps exceeded. */
int fh_registry_parse(const char *file, const char *text, size_t len, fh_registry **ret, fh_diags *diags);
fh_registry *fh_registry_free(fh_registry *r);

/* O(1) lookup by id; NULL when absent. */
const fh_station *fh_registry_find(const fh_registry *r, const char *id, size_t len);

/* Column index by name, or -1. */
int fh_registry_column(const fh_registry *r, const char *name, size_t len);

/* Attribute of a station by column index; NULL when the cell is empty or
 * the index is -1. */
static inline const fh_attr *fh_station_attr(const fh_station *s, int col) {
        if (col < 0 || !s->attrs[col].present)
                return NULL;
        return &s->attrs[col];
}

#endif
