#include "client/cmd/cli.h"

#include "client/store/index.h"
#include "common/strvec.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

const char *cairn_cli_opt_value(int argc, char **argv, int *i,
                                const char *lng, const char *shrt,
                                bool *missing)
{
    const char *a = argv[*i];
    size_t n = strlen(lng);
    if (strncmp(a, lng, n) == 0 && a[n] == '=')
        return a + n + 1;
    if (strcmp(a, lng) == 0 || (shrt && strcmp(a, shrt) == 0)) {
        if (*i + 1 >= argc) {
            *missing = true;
            return NULL;
        }
        return argv[++*i];
    }
    return NULL;
}

int cairn_cli_store_open(struct cairn_store **st, struct cairn_err *err)
{
    char root[PATH_MAX];
    if (cairn_root_path(root, sizeof root) != 0)
        return cairn_err_set(err, CAIRN_E_TOOBIG, "store path too long");
    return cairn_store_open(root, st, err);
}

void cairn_cli_human_size(uint64_t bytes, int precision, char *buf,
                          size_t len)
{
    static const char *const units[] = {"B",  "kB", "MB", "GB", "TB",
                                        "PB", "EB", "ZB", "YB"};
    double v = (double)bytes;
    size_t i = 0;
    while (v >= 1000.0 && i + 1 < sizeof units / sizeof units[0]) {
        v /= 1000.0;
        i++;
    }
    snprintf(buf, len, "%.*g%s", precision, v, units[i]);
}

void cairn_cli_human_ago(int64_t t, int64_t now, char *buf, size_t len)
{
    if (t < 0) {
        snprintf(buf, len, "N/A");
        return;
    }
    int64_t s = now - t;
    int64_t m = s / 60;
    int64_t h = (s + 1800) / 3600; /* Go rounds hours half up */
    if (s < 1)
        snprintf(buf, len, "Less than a second ago");
    else if (s == 1)
        snprintf(buf, len, "1 second ago");
    else if (s < 60)
        snprintf(buf, len, "%lld seconds ago", (long long)s);
    else if (m == 1)
        snprintf(buf, len, "About a minute ago");
    else if (m < 60)
        snprintf(buf, len, "%lld minutes ago", (long long)m);
    else if (h == 1)
        snprintf(buf, len, "About an hour ago");
    else if (h < 48)
        snprintf(buf, len, "%lld hours ago", (long long)h);
    else if (h < 24 * 7 * 2)
        snprintf(buf, len, "%lld days ago", (long long)(h / 24));
    else if (h < 24 * 30 * 2)
        snprintf(buf, len, "%lld weeks ago", (long long)(h / 24 / 7));
    else if (h < 24 * 365 * 2)
        snprintf(buf, len, "%lld months ago", (long long)(h / 24 / 30));
    else
        snprintf(buf, len, "%lld years ago", (long long)(s / 3600 / 24 / 365));
}

bool cairn_cli_epoch_parse(const char *s, int64_t *out)
{
    char *end = NULL;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end != '\0' || v < 0)
        return false;
    *out = v;
    return true;
}

int cairn_cli_insecure_env(struct cairn_strvec *v)
{
    const char *e = getenv("CAIRN_INSECURE_REGISTRIES");
    if (e == NULL)
        return 0;
    char *copy = strdup(e);
    if (copy == NULL)
        return CAIRN_E_NOMEM;
    int rc = 0;
    char *save = NULL;
    for (char *t = strtok_r(copy, ", ", &save); t && rc == 0;
         t = strtok_r(NULL, ", ", &save))
        rc = cairn_strvec_push(v, t);
    free(copy);
    return rc;
}
