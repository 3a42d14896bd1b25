/* libFuzzer target: any bytes as one rule file. Parsing must never crash,
 * hang or leak, whatever the YAML or the expressions in it. */
#include <stddef.h>
#include <stdint.h>

#include "fenghuo/rules.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        fh_ruleset *rs = NULL;
        fh_diags d = FH_DIAGS_NULL;
        char buf[1];

        if (fh_ruleset_new(&rs) < 0)
                return 0;
        (void) fh_ruleset_parse(rs, "fuzz.yaml", (const char *) data, size, &d);
        (void) fh_ruleset_finish(rs, &d);
        /* Every rule that made it must be found again by id. */
        for (size_t i = 0; i < rs->n_rules; i++)
                if (fh_ruleset_find(rs, rs->rules[i].id) != &rs->rules[i])
                        __builtin_trap();
        for (size_t i = 0; i < d.n; i++)
                (void) fh_diag_format(&d.v[i], buf, sizeof(buf));
        fh_diags_clear(&d);
        fh_ruleset_free(rs);
        return 0;
}
