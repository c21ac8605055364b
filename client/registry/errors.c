/* Registry error answers (client/registry/errors.h). */
#include "client/registry/errors.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>

/* The registry's codes that say what was not found (distribution spec). */
static const struct {
    const char *code, *text;
} unknown[] = {
    {"NAME_UNKNOWN", "repository name not known to registry"},
    {"MANIFEST_UNKNOWN", "manifest unknown"},
    {"BLOB_UNKNOWN", "blob unknown to registry"},
    {"BLOB_UPLOAD_UNKNOWN", "blob upload unknown to registry"},
};

/* Printable copy of at most n bytes of s into buf (control bytes and
 * non-ASCII become '?'), so a hostile message cannot paint the terminal. */
static void clean_copy(char *buf, size_t len, const char *s, size_t n)
{
    size_t o = 0;
    for (size_t i = 0; s && i < n && s[i] && o + 1 < len; i++)
        buf[o++] = (s[i] >= 0x20 && s[i] < 0x7f) ? s[i] : '?';
    buf[o] = '\0';
}

int cairn_reg_error_decode(const char *registry, long status, const char *body,
                           size_t len, const char *what, struct cairn_err *err)
{
    char code[64] = "", msg[300] = "";
    json_t *j = body && len ? json_loadb(body, len, 0, NULL) : NULL;
    json_t *e0 = json_array_get(json_object_get(j, "errors"), 0);
    const char *c = json_string_value(json_object_get(e0, "code"));
    const char *m = json_string_value(json_object_get(e0, "message"));
    if (c)
        clean_copy(code, sizeof code, c, strlen(c));
    if (m)
        clean_copy(msg, sizeof msg, m, strlen(m));
    else if (j == NULL && body && status != 404 && status != 401)
        /* A proxy's HTML or text page: its first line says enough. */
        clean_copy(msg, sizeof msg, body, strcspn(body, "\r\n"));
    json_decref(j);
    if (what == NULL)
        what = "request";
    if (status == 401 || status == 403)
        return cairn_err_set(
            err, CAIRN_E_AUTH,
            "%s: access denied by %s (%ld%s%s%s%s): log in with "
            "`cairn login %s` or check that the "
            "repository exists and you may use it",
            what, registry, status, code[0] ? " " : "", code,
            msg[0] ? ": " : "", msg, registry);
    if (status == 404) {
        const char *text = NULL;
        for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++)
            if (strcmp(code, unknown[i].code) == 0)
                text = unknown[i].text;
        return cairn_err_set(err, CAIRN_E_NOTFOUND, "%s: %s%s%s (404 from %s)",
                             what, text ? text : "not found",
                             code[0] && !text ? " " : "", text ? "" : code,
                             registry);
    }
    return cairn_err_set(err, CAIRN_E_RPC, "%s: %s answered %ld%s%s%s%s", what,
                         registry, status, code[0] ? " " : "", code,
                         msg[0] ? ": " : "", msg);
}
