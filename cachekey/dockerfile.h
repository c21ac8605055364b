/* Dockerfile parser: text to a list of instructions (an AST).
 *
 * Covers the Dockerfile reference: parser directives (# escape=, # syntax=
 * accepted and ignored), comments, line continuations (also with the
 * backtick escape, and with comment or empty lines inside a continuation),
 * JSON exec form vs shell form (invalid JSON is shell form), heredocs, flags
 * and every instruction. It does no variable expansion: words keep their
 * quotes and $ references; cachekey/expand.h interprets them later.
 *
 * Errors name the file, the line and what is wrong, e.g.
 *   Dockerfile:7: unknown instruction "RUNN"
 * Inputs are capped (CK_DOCKERFILE_MAX_SIZE, CK_DOCKERFILE_MAX_LINE).
 *
 * Thread-safety: parsing is reentrant; a parsed struct ck_dockerfile is
 * read-only afterwards and may be shared between threads.
 */
#ifndef CAIRN_CACHEKEY_DOCKERFILE_H
#define CAIRN_CACHEKEY_DOCKERFILE_H

#include "common/error.h"

#include <stdbool.h>
#include <stddef.h>

#define CK_DOCKERFILE_MAX_SIZE (4u << 20)   /* whole file, bytes */
#define CK_DOCKERFILE_MAX_LINE (256u << 10) /* one logical line, bytes */
#define CK_DOCKERFILE_MAX_HEREDOC (4u << 20) /* one heredoc body, bytes */
/* Memory the parsed form of one file may use (strings, arrays, structs).
 * Tiny instructions cost far more parsed than written, so the file-size cap
 * alone does not bound memory; past this the parse fails with
 * CAIRN_E_TOOBIG. */
#define CK_DOCKERFILE_MAX_MEMORY (64u << 20)

enum ck_instr_kind {
    CK_INSTR_FROM,
    CK_INSTR_RUN,
    CK_INSTR_CMD,
    CK_INSTR_LABEL,
    CK_INSTR_MAINTAINER,
    CK_INSTR_EXPOSE,
    CK_INSTR_ENV,
    CK_INSTR_ADD,
    CK_INSTR_COPY,
    CK_INSTR_ENTRYPOINT,
    CK_INSTR_VOLUME,
    CK_INSTR_USER,
    CK_INSTR_WORKDIR,
    CK_INSTR_ARG,
    CK_INSTR_ONBUILD,
    CK_INSTR_STOPSIGNAL,
    CK_INSTR_HEALTHCHECK,
    CK_INSTR_SHELL,
};

/* Upper-case keyword of kind ("FROM", ...). Static string. */
const char *ck_instr_name(enum ck_instr_kind kind);

/* A flag before the arguments: "--chown=1:2" is {"chown", "1:2"};
 * a flag without '=' ("--link") has value NULL. */
struct ck_flag {
    char *name;
    char *value;
};

/* A heredoc attached to an instruction (RUN <<EOF, COPY <<EOF /dst). */
struct ck_heredoc {
    char *name;    /* delimiter word, quotes removed ("EOF") */
    char *content; /* body lines, each ending in '\n'; with <<- the leading
                      tabs of every line are already removed */
    bool expand;   /* false when the delimiter was quoted ('EOF' or "EOF"):
                      then no variable expansion applies to the body */
    bool chomp;    /* written as <<- */
};

/*
 * One instruction. What args holds depends on kind:
 *
 *  FROM         words: {image} or {image, "AS", name} ("AS" as written).
 *  RUN, CMD, ENTRYPOINT
 *               json: the argv; shell form: one element, the command line
 *               with continuations joined (backslash-newline removed). An
 *               empty shell form ("CMD" alone) is {""}, as Docker runs it.
 *  SHELL        json only (shell form is an error): the argv.
 *  ENV, LABEL   pairs {k1, v1, k2, v2, ...}; raw (quotes kept). The legacy
 *               form "ENV k v w" gives {k, "v w"}.
 *  ARG          words, each "name" or "name=default" (raw).
 *  ADD, COPY    json or shell words: {src..., dest}; at least two.
 *  EXPOSE       words.
 *  VOLUME       json or shell words.
 *  USER, WORKDIR, STOPSIGNAL, MAINTAINER
 *               one element: the rest of the line, trimmed.
 *  HEALTHCHECK  {"NONE"} or {"CMD", ...} where "..." is as for CMD (json
 *               tells which form); the type is upper-cased ("cmd" -> "CMD").
 *  ONBUILD      no args; sub holds the triggered instruction.
 *
 * A heredoc's marker stays in args as written ("<<EOF", "<<-'EOF'"); the
 * bodies are in heredocs, in order of appearance (for ONBUILD, on sub).
 * Only RUN, COPY and ADD take heredocs; CRLF in a body becomes LF.
 *
 * Flags, in the order written (quotes removed from the flag word):
 *   FROM --platform; RUN --mount --network --security; COPY --from --chown
 *   --chmod --link --parents --exclude; ADD --chown --chmod --link
 *   --checksum --keep-git-dir --unpack --exclude; HEALTHCHECK --interval
 *   --timeout --start-period --start-interval --retries.
 * Only --mount and --exclude may repeat. Boolean flags (--link, --parents,
 * --keep-git-dir, --unpack) take no value or =true/=false; the others need
 * =value. Anything else is an error, e.g. `unknown flag "--foo" for COPY`.
 * Values are not interpreted (durations, modes, mount specs are the
 * caller's business).
 */
struct ck_instr {
    enum ck_instr_kind kind;
    int line;       /* 1-based line of the keyword */
    int end_line;   /* last line, including continuations and heredocs */
    char *original; /* the logical line as written, continuations joined,
                       trimmed (for history's CREATED BY) */
    struct ck_flag *flags;
    size_t nflags;
    bool json; /* exec (JSON array) form */
    char **args;
    size_t nargs;
    struct ck_heredoc *heredocs;
    size_t nheredocs;
    struct ck_instr *sub; /* ONBUILD's instruction; NULL otherwise */
};

struct ck_dockerfile {
    char *name;  /* name used in error messages ("Dockerfile") */
    char escape; /* '\\' or '`' */
    struct ck_instr *instrs;
    size_t ninstrs;
};

/* Parses len bytes of text (need not be NUL-terminated). name is used in
 * error messages (NULL: "Dockerfile"). On success *out is a new struct
 * ck_dockerfile (free with ck_dockerfile_free); on failure *out is left
 * alone. Returns 0, CAIRN_E_PARSE (err says file:line: what; a file
 * without any instruction or with a NUL byte is an error too),
 * CAIRN_E_TOOBIG (one of the caps above), CAIRN_E_INVAL or CAIRN_E_NOMEM. */
int ck_dockerfile_parse(const char *name, const char *text, size_t len,
                        struct ck_dockerfile **out, struct cairn_err *err);

/* Reads and parses the file at path; messages use path's last component's
 * name as written by the caller (path itself). Also returns negative errno
 * when the file cannot be read. */
int ck_dockerfile_parse_file(const char *path, struct ck_dockerfile **out,
                             struct cairn_err *err);

/* Frees df and everything it owns. Accepts NULL. */
void ck_dockerfile_free(struct ck_dockerfile *df);

/* Value of flag name ("chown") on instr, or NULL when absent. *present
 * (if not NULL) tells absent from "--link" (present, value NULL). For a
 * flag that may repeat (--mount, --exclude) this is the first occurrence;
 * walk instr->flags for all of them. The string is borrowed from instr. */
const char *ck_instr_flag(const struct ck_instr *instr, const char *name,
                          bool *present);

#endif
