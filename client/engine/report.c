/* How a step shows itself (report.h): the message of its failure
 * and the progress line of its layer write. Used by the build driver
 * (build.c) and the steps (build_run.c, build_copy.c). */
#include "client/engine/report.h"

#include "client/store/layer.h"

#include <stdint.h>
#include <stdio.h>

int build_step_fail(struct build *b, const struct ck_step *s, int rc,
                    const char *what)
{
    return cairn_err_set(b->err, rc, "step %d/%d (%s:%d %s): %s", s->number,
                         b->total, b->df->name, s->instr->line,
                         ck_instr_name(s->instr->kind), what);
}

/* ---- layer progress ------------------------------------------------------ */

/* Layers smaller than this are written before anyone would wonder. */
#define BUILD_PROGRESS_MIN ((uint64_t)32 << 20)

static void layer_progress_cb(void *arg, uint64_t tar_bytes)
{
    struct layer_progress *p = arg;
    if (tar_bytes < BUILD_PROGRESS_MIN)
        return;
    /* MB as Docker prints sizes: 10^6 bytes. The line is rewritten in
     * place with \r until the layer is done. */
    fprintf(p->out, "\r ---> writing layer: %llu MB",
            (unsigned long long)(tar_bytes / 1000000));
    fflush(p->out);
    p->shown = true;
}

/* Hooks p into lo when the output is a terminal (plain logs get no
 * carriage returns). */
void build_progress_start(struct build *b, struct cairn_layer_opts *lo,
                          struct layer_progress *p)
{
    p->out = b->out;
    p->shown = false;
    if (b->o->tty) {
        lo->progress = layer_progress_cb;
        lo->progress_arg = p;
    }
}

/* Ends a progress line that was shown, so the next output starts on a
 * line of its own. */
void build_progress_end(struct layer_progress *p)
{
    if (p->shown)
        fputc('\n', p->out);
    p->shown = false;
}
