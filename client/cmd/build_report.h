/* Build reports (client/cmd/build_report.c): what `cairn build
 * --metadata-file F` writes and `--progress json` streams, made from the
 * engine's per-step records (struct cairn_build_step). The schema is in
 * docs/build.md, "Build reports". Not thread-safe: one per build. */
#ifndef CAIRN_CLIENT_CMD_BUILD_REPORT_H
#define CAIRN_CLIENT_CMD_BUILD_REPORT_H

#include "client/engine/build_opts.h"
#include "common/error.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

struct build_report;

/* A new report; its steps are kept when keep is set (for the metadata
 * file) and each is written as one JSON line to lines when that is not
 * NULL (--progress json). Returns 0 or CAIRN_E_NOMEM. */
int build_report_new(bool keep, FILE *lines, struct build_report **out);

/* The cairn_build_opts.on_step callback; arg is the struct build_report.
 * A record that cannot be made (out of memory) is left out. */
void build_report_step(void *arg, const struct cairn_build_step *step);

/* What the whole build did: image_id NULL and error set when it failed. */
struct build_report_end {
    const struct cairn_build_stats *stats;
    double secs;
    const char *image_id;
    const char *const *tags;
    size_t ntags;
    const char *error;
};

/* Writes the final totals line to the lines stream, if any. */
void build_report_totals_line(struct build_report *r,
                              const struct build_report_end *e);

/* Writes the report to path atomically (a temp file beside it, renamed
 * over it). Returns 0, or -errno / CAIRN_E_NOMEM with err set. */
int build_report_write(struct build_report *r, const struct build_report_end *e,
                       const char *path, struct cairn_err *err);

void build_report_free(struct build_report *r);

#endif
