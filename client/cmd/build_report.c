/* Build reports (build_report.h): JSON records of a build's steps and
 * totals, for harnesses that measure builds. */
#include "client/cmd/build_report.h"

#include "client/store/json.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct build_report {
    json_t *steps; /* NULL: not kept */
    FILE *lines;   /* NULL: no JSON lines */
};

static const char *status_name(enum cairn_step_status s)
{
    switch (s) {
    case CAIRN_STEP_LOCAL:
        return "local";
    case CAIRN_STEP_REMOTE:
        return "remote";
    case CAIRN_STEP_RAN:
        return "ran";
    case CAIRN_STEP_FAILED:
        return "failed";
    case CAIRN_STEP_NONE:
        break;
    }
    return "none";
}

int build_report_new(bool keep, FILE *lines, struct build_report **out)
{
    struct build_report *r = calloc(1, sizeof *r);
    if (r == NULL)
        return CAIRN_E_NOMEM;
    if (keep && (r->steps = json_array()) == NULL) {
        free(r);
        return CAIRN_E_NOMEM;
    }
    r->lines = lines;
    *out = r;
    return 0;
}

/* One step as a JSON object (NULL: out of memory). The stage label is
 * `cairn keys --json`'s: the AS name, or "stage-N". */
static json_t *step_json(const struct cairn_build_step *s)
{
    char label[128];
    if (s->stage_name)
        snprintf(label, sizeof label, "%s", s->stage_name);
    else
        snprintf(label, sizeof label, "stage-%zu", s->stage_index);
    /* Stage names and instructions come from the Dockerfile and need not
     * be UTF-8: "o" with cairn_json_string, never "s". */
    json_t *o = json_pack(
        "{s:I, s:I, s:o, s:I, s:s, s:o, s:s, s:s, s:f}", "step",
        (json_int_t)s->number, "total", (json_int_t)s->total, "stage",
        cairn_json_string(label), "stage_index", (json_int_t)s->stage_index,
        "kind", s->kind, "instruction", cairn_json_string(s->instruction),
        "key", s->key, "status", status_name(s->status), "duration", s->secs);
    if (o == NULL)
        return NULL;
    json_t *layer = json_null();
    if (s->has_layer)
        layer =
            json_pack("{s:s, s:I, s:s, s:I, s:I}", "digest", s->layer.digest,
                      "size", (json_int_t)s->layer.size, "diff_id",
                      s->layer.diff_id, "members", (json_int_t)s->members,
                      "members_reused", (json_int_t)s->members_reused);
    if (layer == NULL || json_object_set_new(o, "layer", layer) != 0) {
        json_decref(o);
        return NULL;
    }
    if (s->error &&
        json_object_set_new(o, "error", cairn_json_string(s->error)) != 0) {
        json_decref(o);
        return NULL;
    }
    return o;
}

/* Writes o as one line to f (compact, ASCII) and flushes it, so that a
 * reader of a pipe sees each record when the step ends. */
static void line_write(FILE *f, const json_t *o)
{
    if (json_dumpf(o, f,
                   JSON_COMPACT | JSON_ENSURE_ASCII | JSON_REAL_PRECISION(6)) ==
        0)
        fputc('\n', f);
    fflush(f);
}

void build_report_step(void *arg, const struct cairn_build_step *step)
{
    struct build_report *r = arg;
    json_t *o = step_json(step);
    if (o == NULL)
        return;
    if (r->lines) {
        json_t *l = json_pack("{s:s}", "type", "step");
        if (l && json_object_update(l, o) == 0)
            line_write(r->lines, l);
        json_decref(l);
    }
    if (r->steps)
        json_array_append(r->steps, o);
    json_decref(o);
}

/* The totals object of e (NULL: out of memory). */
static json_t *totals_json(const struct build_report_end *e)
{
    const struct cairn_build_stats *st = e->stats;
    return json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:f}",
                     "steps", (json_int_t)st->steps, "local_hits",
                     (json_int_t)st->cached, "remote_hits",
                     (json_int_t)st->remote, "ran", (json_int_t)st->run,
                     "claimed", (json_int_t)st->claimed, "waited",
                     (json_int_t)st->waited, "bytes_down", (json_int_t)st->bytes_down, "bytes_up",
                     (json_int_t)st->bytes_up, "layer_bytes",
                     (json_int_t)st->layer_bytes, "duration", e->secs);
}

/* The build's outcome: status, error, image ID and tags (NULL: out of
 * memory). */
static json_t *end_json(const struct build_report_end *e)
{
    json_t *tags = json_array();
    for (size_t i = 0; tags && i < e->ntags; i++)
        if (json_array_append_new(tags, cairn_json_string(e->tags[i])) != 0) {
            json_decref(tags);
            tags = NULL;
        }
    if (tags == NULL)
        return NULL;
    json_t *o = json_pack("{s:s, s:o, s:o, s:o}", "status",
                          e->error ? "failed" : "success", "image_id",
                          e->image_id ? json_string(e->image_id) : json_null(),
                          "tags", tags, "totals", totals_json(e));
    if (o && e->error &&
        json_object_set_new(o, "error", cairn_json_string(e->error)) != 0) {
        json_decref(o);
        return NULL;
    }
    return o;
}

void build_report_totals_line(struct build_report *r,
                              const struct build_report_end *e)
{
    if (r->lines == NULL)
        return;
    json_t *o = end_json(e);
    json_t *l = json_pack("{s:s}", "type", "totals");
    if (o && l && json_object_update(l, o) == 0)
        line_write(r->lines, l);
    json_decref(l);
    json_decref(o);
}

int build_report_write(struct build_report *r, const struct build_report_end *e,
                       const char *path, struct cairn_err *err)
{
    char tmp[4096];
    int n = snprintf(tmp, sizeof tmp, "%s.tmp.XXXXXX", path);
    if (n < 0 || (size_t)n >= sizeof tmp)
        return cairn_err_set(err, -ENAMETOOLONG, "metadata file path too long");
    json_t *o = end_json(e);
    if (o == NULL || r->steps == NULL ||
        json_object_set(o, "steps", r->steps) != 0) {
        json_decref(o);
        return cairn_err_set(err, CAIRN_E_NOMEM, "out of memory");
    }
    int rc = 0;
    int fd = mkstemp(tmp);
    if (fd < 0) {
        rc = -errno;
        cairn_err_set(err, rc, "metadata file %s: %s", tmp, strerror(errno));
        goto out;
    }
    /* mkstemp makes it 0600; a report is no secret. */
    errno = 0;
    if (fchmod(fd, 0644) != 0 ||
        json_dumpfd(o, fd,
                    JSON_INDENT(2) | JSON_ENSURE_ASCII |
                        JSON_REAL_PRECISION(6)) != 0 ||
        write(fd, "\n", 1) != 1 || fsync(fd) != 0) {
        rc = -(errno ? errno : EIO);
        cairn_err_set(err, rc, "metadata file %s: %s", tmp, strerror(-rc));
        close(fd);
        unlink(tmp);
        goto out;
    }
    if (close(fd) != 0 || rename(tmp, path) != 0) {
        rc = -errno;
        cairn_err_set(err, rc, "metadata file %s: %s", path, strerror(errno));
        unlink(tmp);
    }
out:
    json_decref(o);
    return rc;
}

void build_report_free(struct build_report *r)
{
    if (r == NULL)
        return;
    json_decref(r->steps);
    free(r);
}
