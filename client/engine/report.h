/* How a step shows itself (client/engine/report.c): the message of its
 * failure and the progress line of its layer write. Used by the build
 * driver and the steps; private to the engine. */
#ifndef CAIRN_CLIENT_ENGINE_REPORT_H
#define CAIRN_CLIENT_ENGINE_REPORT_H

#include "client/engine/build_state.h"

#include <stdbool.h>
#include <stdio.h>

/* The progress line of one layer write on a terminal. */
struct layer_progress {
    FILE *out;
    bool shown;
};

/* Sets b->err to what, prefixed with step s's number, Dockerfile line and
 * instruction; returns rc. */
int build_step_fail(struct build *b, const struct ck_step *s, int rc,
                    const char *what);

/* Hooks p into lo when the output is a terminal (plain logs get no
 * carriage returns). */
void build_progress_start(struct build *b, struct cairn_layer_opts *lo,
                          struct layer_progress *p);

/* Ends a progress line that was shown, so the next output starts on a
 * line of its own. */
void build_progress_end(struct layer_progress *p);

#endif
