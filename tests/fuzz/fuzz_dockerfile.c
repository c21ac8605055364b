/* Fuzz target for the Dockerfile parser: any input must parse or fail with
 * an error message, never crash, leak or read out of bounds. On success
 * every string of the result is walked, so a dangling or unterminated
 * string shows up under the sanitizers. */
#include "cachekey/dockerfile.h"

#include <stdint.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static size_t walk_instr(const struct ck_instr *ins)
{
    size_t sum = strlen(ins->original) + strlen(ck_instr_name(ins->kind));
    for (size_t i = 0; i < ins->nflags; i++)
        sum += strlen(ins->flags[i].name) +
               (ins->flags[i].value ? strlen(ins->flags[i].value) : 0);
    for (size_t i = 0; i < ins->nargs; i++)
        sum += strlen(ins->args[i]);
    for (size_t i = 0; i < ins->nheredocs; i++)
        sum += strlen(ins->heredocs[i].name) + strlen(ins->heredocs[i].content);
    if (ins->sub)
        sum += walk_instr(ins->sub);
    return sum;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct ck_dockerfile *df = NULL;
    struct cairn_err err;
    cairn_err_clear(&err);
    int rc = ck_dockerfile_parse("Dockerfile", (const char *)data, size, &df, &err);
    if (rc == 0) {
        volatile size_t sum = 0;
        for (size_t i = 0; i < df->ninstrs; i++)
            sum += walk_instr(&df->instrs[i]);
        (void)sum;
        ck_dockerfile_free(df);
    } else {
        /* A failure always explains itself. */
        if (err.msg[0] == '\0')
            __builtin_trap();
    }
    return 0;
}
