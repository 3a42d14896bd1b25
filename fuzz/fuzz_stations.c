/* Any bytes as a station file: parse, look up, free. Must never crash, hang
 * or leak; a registry that parses must be sorted and find every station it
 * holds. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "fenghuo/registry.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(const fh_registry *r, const char *id, size_t len) {
        const fh_station *s = fh_registry_find(r, id, len);

        if (s && (s->id_len != len || memcmp(s->id, id, len) != 0 || s != &r->stations[s->index]))
                abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        fh_diags d = FH_DIAGS_NULL;
        fh_registry *r = NULL;
        int rc = fh_registry_parse("fuzz.csv", (const char *)data, size, &r, &d);

        if (rc == 0) {
                if (d.n_errors != 0)
                        abort();
                for (size_t i = 0; i < r->n_stations; i++) {
                        const fh_station *s = &r->stations[i];

                        if (s->index != i || fh_registry_find(r, s->id, s->id_len) != s)
                                abort();
                        if (i > 0 && strcmp(r->stations[i - 1].id, s->id) >= 0)
                                abort();
                        if (s->name_len == 0 || strlen(s->name) != s->name_len)
                                abort();
                        for (size_t c = 0; c < r->n_columns; c++)
                                if (strlen(s->attrs[c].str) != s->attrs[c].len)
                                        abort();
                }
                check(r, "MY-RG-0001", 10);
                check(r, "A", 1);
                /* Slices of the input as ids: mostly misses, sometimes hits. */
                for (size_t off = 0; off + 1 < size && off < 64; off += 7)
                        check(r, (const char *)data + off, FH_MIN(size - off, (size_t)(1 + data[off] % 16)));
                (void)fh_registry_column(r, "name", 4);
                (void)fh_registry_column(r, "basin", 5);
                r = fh_registry_free(r);
        } else if (rc != -EINVAL || d.n_errors == 0) {
                abort();
        }
        fh_diags_clear(&d);
        return 0;
}
