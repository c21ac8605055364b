/* cairn key generate|public: the Ed25519 keys that sign shared cache
 * entries (client/remote/sign.h, docs/security.md). Not to be confused
 * with `cairn keys`, which prints cache keys. */
#include "client/cmd/commands.h"

#include "client/remote/sign.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static void key_usage(FILE *out)
{
    fprintf(out,
            "Usage: cairn key generate [--out PATH]\n"
            "       cairn key public PATH\n\n"
            "  generate  make an Ed25519 key for signing cache entries: the\n"
            "            private key goes to PATH (PKCS#8 PEM, mode 0600, never\n"
            "            overwritten; \"-\" for stdout; default\n"
            "            $XDG_CONFIG_HOME/cairn/sign.key), the public key is\n"
            "            printed, for readers' `trust` setting\n"
            "  public    print the public key of the private key at PATH\n\n"
            "Writers set `sign-key = PATH`; readers set `trust = SCOPE "
            "ed25519:...`\n"
            "(docs/remote.md).\n");
}

/* Prints the public form and the id (to stderr when stdout has the
 * private key). */
static void print_public(FILE *out, const struct cairn_sign_pub *p)
{
    char text[CAIRN_SIGN_PUB_TEXT_LEN + 1];
    cairn_sign_pub_format(p, text, sizeof text);
    fprintf(out, "public key: %s\nkey id:     %s\n", text, p->id);
}

/* The default key path; makes its directory (0700) when missing. */
static int default_path(char *buf, size_t n)
{
    const char *xdg = getenv("XDG_CONFIG_HOME"), *home = getenv("HOME");
    char dir[4096];
    int w = -1;
    if (xdg && xdg[0])
        w = snprintf(dir, sizeof dir, "%s/cairn", xdg);
    else if (home && home[0])
        w = snprintf(dir, sizeof dir, "%s/.config/cairn", home);
    if (w < 0 || (size_t)w >= sizeof dir) {
        fprintf(stderr, "cairn key: no HOME or XDG_CONFIG_HOME; give --out "
                        "PATH\n");
        return -1;
    }
    if (xdg == NULL || !xdg[0]) {
        char parent[4096];
        snprintf(parent, sizeof parent, "%s/.config", home);
        if (mkdir(parent, 0700) != 0 && errno != EEXIST) {
            fprintf(stderr, "cairn key: %s: %s\n", parent, strerror(errno));
            return -1;
        }
    }
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        fprintf(stderr, "cairn key: %s: %s\n", dir, strerror(errno));
        return -1;
    }
    w = snprintf(buf, n, "%s/sign.key", dir);
    return w > 0 && (size_t)w < n ? 0 : -1;
}

static int key_generate(int argc, char **argv)
{
    const char *out = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--out") == 0 && i + 1 < argc)
            out = argv[++i];
        else if (strncmp(argv[i], "--out=", 6) == 0)
            out = argv[i] + 6;
        else {
            fprintf(stderr, "cairn key generate: unexpected \"%s\"\n", argv[i]);
            key_usage(stderr);
            return 2;
        }
    }
    char path[4200];
    if (out == NULL) {
        if (default_path(path, sizeof path) != 0)
            return 1;
        out = path;
    }
    struct cairn_err err;
    cairn_err_clear(&err);
    struct cairn_sign_key *k = NULL;
    int rc = cairn_sign_key_generate(&k, &err);
    if (!rc)
        rc = cairn_sign_key_save(k, out, &err);
    if (rc) {
        fprintf(stderr, "cairn key generate: %s\n", err.msg);
        cairn_sign_key_free(k);
        return 1;
    }
    struct cairn_sign_pub pub;
    cairn_sign_key_public(k, &pub);
    cairn_sign_key_free(k);
    bool to_stdout = strcmp(out, "-") == 0;
    FILE *f = to_stdout ? stderr : stdout;
    if (!to_stdout)
        fprintf(f, "private key: %s (writers: sign-key = %s)\n", out, out);
    print_public(f, &pub);
    return 0;
}

static int key_public(int argc, char **argv)
{
    if (argc != 2 || argv[1][0] == '-') {
        key_usage(stderr);
        return 2;
    }
    struct cairn_err err;
    cairn_err_clear(&err);
    struct cairn_sign_key *k = NULL;
    if (cairn_sign_key_load(argv[1], &k, &err) != 0) {
        fprintf(stderr, "cairn key public: %s\n", err.msg);
        return 1;
    }
    struct cairn_sign_pub pub;
    cairn_sign_key_public(k, &pub);
    cairn_sign_key_free(k);
    char text[CAIRN_SIGN_PUB_TEXT_LEN + 1];
    cairn_sign_pub_format(&pub, text, sizeof text);
    printf("%s\n", text);
    fprintf(stderr, "key id: %s\n", pub.id);
    return 0;
}

int cairn_cmd_key(int argc, char **argv)
{
    static const struct {
        const char *name;
        int (*run)(int argc, char **argv);
    } subs[] = {{"generate", key_generate}, {"public", key_public}};
    if (argc >= 2 && (strcmp(argv[1], "-h") == 0 ||
                      strcmp(argv[1], "--help") == 0)) {
        key_usage(stdout);
        return 0;
    }
    for (size_t i = 0; argc >= 2 && i < sizeof subs / sizeof subs[0]; i++)
        if (strcmp(argv[1], subs[i].name) == 0)
            return subs[i].run(argc - 1, argv + 1);
    key_usage(stderr);
    return 2;
}
