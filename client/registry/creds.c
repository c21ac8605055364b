/* Docker's config.json: where it is, how its `auths` keys name a registry,
 * and how cairn rewrites it without losing what other tools keep there. */
#include "client/registry/creds.h"

#include "client/registry/credhelper.h"
#include "common/buf.h"
#include "common/fdio.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <openssl/evp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

/* A config.json holds a few logins and settings; 4 MiB is far past any real
 * one and small enough to read whole. */
#define CREDS_FILE_MAX (4 * 1024 * 1024)
#define CREDS_REGISTRY_MAX 255
#define CREDS_SECRET_MAX (16 * 1024)
/* Where Docker keeps Docker Hub's login, whatever name the reference used. */
#define HUB_KEY "https://index.docker.io/v1/"

static int is_hub(const char *host)
{
    return strcasecmp(host, "docker.io") == 0 ||
           strcasecmp(host, "index.docker.io") == 0 ||
           strcasecmp(host, "registry-1.docker.io") == 0;
}

/* The host[:port] an `auths` key names, as Docker's ConvertToHostname
 * reads it: "https://host/v1/", "http://host" and "host" all name host.
 * Docker Hub's names all become "index.docker.io". */
static void key_host(const char *key, char *dst, size_t n)
{
    if (strncasecmp(key, "https://", 8) == 0)
        key += 8;
    else if (strncasecmp(key, "http://", 7) == 0)
        key += 7;
    size_t len = strcspn(key, "/");
    if (len >= n)
        len = n - 1;
    memcpy(dst, key, len);
    dst[len] = '\0';
    if (is_hub(dst))
        snprintf(dst, n, "index.docker.io");
}

static int key_matches(const char *key, const char *registry)
{
    char a[CREDS_REGISTRY_MAX + 1], b[CREDS_REGISTRY_MAX + 1];
    key_host(key, a, sizeof a);
    key_host(registry, b, sizeof b);
    return strcasecmp(a, b) == 0;
}

/* The name Docker stores registry under (and gives credential helpers). */
static const char *server_name(const char *registry)
{
    return is_hub(registry) ? HUB_KEY : registry;
}

static int registry_check(const char *registry, struct cairn_err *err)
{
    size_t n = registry ? strlen(registry) : 0;
    int ok = n > 0 && n <= CREDS_REGISTRY_MAX;
    for (size_t i = 0; ok && i < n; i++)
        ok = (unsigned char)registry[i] > 0x20 && registry[i] != 0x7f &&
             registry[i] != '/';
    if (!ok)
        return cairn_err_set(err, CAIRN_E_INVAL,
                             "\"%.*s\" is not a registry host[:port]",
                             CREDS_REGISTRY_MAX, registry ? registry : "");
    return 0;
}

/* $DOCKER_CONFIG/config.json, else ~/.docker/config.json. */
static int config_path(char *dst, size_t n, struct cairn_err *err)
{
    const char *dir = getenv("DOCKER_CONFIG");
    int w;
    if (dir && *dir) {
        w = snprintf(dst, n, "%s/config.json", dir);
    } else {
        const char *home = getenv("HOME");
        if (!home || !*home) {
            struct passwd *pw = getpwuid(getuid());
            home = pw ? pw->pw_dir : NULL;
        }
        if (!home)
            return cairn_err_set(err, CAIRN_E_NOTFOUND,
                                 "no $DOCKER_CONFIG or home directory for "
                                 "config.json");
        w = snprintf(dst, n, "%s/.docker/config.json", home);
    }
    if (w < 0 || (size_t)w >= n)
        return cairn_err_set(err, CAIRN_E_TOOBIG,
                             "the path of config.json is too long");
    return 0;
}

/* Reads the config whole: *out is its root object, an empty one when the
 * file does not exist. Everything in it is checked for the shape cairn
 * reads before use, so a hostile file gets one clear error. */
static int config_load(const char *path, json_t **out, struct cairn_err *err)
{
    struct cairn_buf b;
    char chunk[16384];
    cairn_buf_init(&b, CREDS_FILE_MAX);
    json_t *root = NULL;
    int rc = 0;
    /* O_NONBLOCK: a FIFO in its place must not hang cairn before the
     * regular-file check; it changes nothing for a regular file. */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) {
        if (errno == ENOENT) {
            *out = json_object();
            return *out ? 0 : cairn_err_set(err, CAIRN_E_NOMEM, "out of memory");
        }
        return cairn_err_set(err, -errno, "%s: %s", path, strerror(errno));
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        rc = cairn_err_set(err, CAIRN_E_INVAL, "%s: not a regular file", path);
        goto out;
    }
    for (;;) {
        ssize_t n = read(fd, chunk, sizeof chunk);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = cairn_err_set(err, -errno, "%s: %s", path, strerror(errno));
            goto out;
        }
        if (n == 0)
            break;
        rc = cairn_buf_append(&b, chunk, (size_t)n);
        if (rc != 0) {
            rc = cairn_err_set(err, rc, "%s: larger than %d bytes", path,
                               CREDS_FILE_MAX);
            goto out;
        }
    }
    json_error_t jerr;
    root = json_loadb(b.data ? b.data : "", b.len, 0, &jerr);
    if (!root) {
        /* An empty file is what some tools leave: no settings. */
        if (b.len == 0 || strspn(b.data, " \t\r\n") == b.len) {
            root = json_object();
        } else {
            rc = cairn_err_set(err, CAIRN_E_PARSE,
                               "%s: malformed JSON at line %d: %s", path,
                               jerr.line, jerr.text);
            goto out;
        }
    }
    json_t *auths = json_object_get(root, "auths");
    json_t *helpers = json_object_get(root, "credHelpers");
    json_t *store = json_object_get(root, "credsStore");
    const char *bad = NULL, *want = "object";
    if (!json_is_object(root))
        bad = "the file";
    else if (auths && !json_is_object(auths))
        bad = "\"auths\"";
    else if (helpers && !json_is_object(helpers))
        bad = "\"credHelpers\"";
    else if (store && !json_is_string(store))
        bad = "\"credsStore\"", want = "string";
    const char *k;
    json_t *v;
    json_object_foreach(auths, k, v) {
        if (!bad && !json_is_object(v))
            bad = "an entry of \"auths\"";
    }
    json_object_foreach(helpers, k, v) {
        if (!bad && !json_is_string(v))
            bad = "an entry of \"credHelpers\"", want = "string";
    }
    if (bad) {
        rc = cairn_err_set(err, CAIRN_E_PARSE, "%s: %s is not a JSON %s",
                           path, bad, want);
        goto out;
    }
    *out = root;
    root = NULL;
out:
    json_decref(root);
    if (b.data)
        explicit_bzero(b.data, b.len);
    explicit_bzero(chunk, sizeof chunk);
    cairn_buf_free(&b);
    close(fd);
    return rc;
}

/* The credential helper configured for registry, or NULL: credHelpers
 * first (by any of the names Docker uses), then credsStore. An empty name
 * means none, as in Docker. */
static const char *config_helper(json_t *root, const char *registry)
{
    const char *k;
    json_t *v;
    json_object_foreach(json_object_get(root, "credHelpers"), k, v) {
        if (key_matches(k, registry) && json_string_value(v)[0])
            return json_string_value(v);
    }
    const char *s = json_string_value(json_object_get(root, "credsStore"));
    return s && s[0] ? s : NULL;
}

/* The `auths` entry for registry: the exact key first, then any key Docker
 * would take for the same host. */
static json_t *config_entry(json_t *root, const char *registry,
                            const char **key)
{
    json_t *auths = json_object_get(root, "auths");
    const char *exact = server_name(registry);
    json_t *e = json_object_get(auths, exact);
    if (e) {
        *key = exact;
        return e;
    }
    const char *k;
    json_t *v;
    json_object_foreach(auths, k, v) {
        if (key_matches(k, registry)) {
            *key = k;
            return v;
        }
    }
    return NULL;
}

static int entry_decode(const char *path, const char *key, json_t *e,
                        struct cairn_reg_creds *out, struct cairn_err *err)
{
    struct cairn_reg_creds c = {0};
    unsigned char *raw = NULL;
    size_t raw_size = 0;
    int rc = 0;
    const char *idt = json_string_value(json_object_get(e, "identitytoken"));
    const char *auth = json_string_value(json_object_get(e, "auth"));
    const char *user = json_string_value(json_object_get(e, "username"));
    const char *pass = json_string_value(json_object_get(e, "password"));
    if (idt && idt[0]) {
        if (strlen(idt) > CREDS_SECRET_MAX)
            goto bad;
        c.identity_token = 1;
        if (!(c.secret = strdup(idt)))
            goto nomem;
    } else if (auth && auth[0]) {
        size_t n = strlen(auth);
        if (n > CREDS_SECRET_MAX || n % 4 != 0)
            goto bad;
        raw_size = n / 4 * 3 + 1;
        raw = malloc(raw_size);
        if (!raw)
            goto nomem;
        int len = EVP_DecodeBlock(raw, (const unsigned char *)auth, (int)n);
        if (len < 0)
            goto bad;
        /* EVP_DecodeBlock counts the padding's zero bytes. */
        for (size_t i = n; i > 0 && auth[i - 1] == '=' && len > 0; i--)
            len--;
        raw[len] = '\0';
        char *colon = memchr(raw, ':', (size_t)len);
        if (!colon || memchr(raw, '\0', (size_t)len))
            goto bad;
        *colon = '\0';
        if (!(c.username = strdup((char *)raw)) ||
            !(c.secret = strdup(colon + 1)))
            goto nomem;
    } else if (user && pass && pass[0]) {
        /* Old files kept the two apart. */
        if (!(c.username = strdup(user)) || !(c.secret = strdup(pass)))
            goto nomem;
    } else {
        rc = CAIRN_E_NOTFOUND;
        goto out;
    }
    *out = c;
    memset(&c, 0, sizeof c);
    goto out;
bad:
    rc = cairn_err_set(err, CAIRN_E_PARSE,
                       "%s: the credentials for \"%.*s\" are not valid "
                       "(\"auth\" must be base64 of user:secret)",
                       path, CREDS_REGISTRY_MAX, key);
    goto out;
nomem:
    rc = cairn_err_set(err, CAIRN_E_NOMEM, "out of memory");
out:
    if (raw) {
        explicit_bzero(raw, raw_size);
        free(raw);
    }
    cairn_reg_creds_clear(&c);
    return rc;
}

int cairn_reg_creds_lookup(const char *registry, struct cairn_reg_creds *out,
                           struct cairn_err *err)
{
    char path[PATH_MAX];
    json_t *root = NULL;
    int rc = registry_check(registry, err);
    if (rc == 0)
        rc = config_path(path, sizeof path, err);
    if (rc == 0)
        rc = config_load(path, &root, err);
    if (rc != 0)
        return rc;
    const char *helper = config_helper(root, registry);
    const char *key = NULL;
    json_t *e;
    if (helper) {
        rc = cairn_reg_credhelper_get(helper, server_name(registry), out, err);
        if (rc != 0 && rc != CAIRN_E_NOTFOUND)
            cairn_err_prefix(err, "%s", path);
    } else if ((e = config_entry(root, registry, &key))) {
        rc = entry_decode(path, key, e, out, err);
    } else {
        rc = CAIRN_E_NOTFOUND;
    }
    if (rc == CAIRN_E_NOTFOUND && !helper)
        cairn_err_set(err, rc, "%s: no credentials for %s", path, registry);
    json_decref(root);
    return rc;
}

/* Writes root to path by a temporary file in the same folder and a rename,
 * so a reader sees the old file or the new one, never half of one; 0600
 * because it may hold secrets. A symlinked config.json (dotfile managers)
 * is replaced at its target, keeping the link. */
static int config_save(const char *path, json_t *root, struct cairn_err *err)
{
    char target[PATH_MAX], tmp[PATH_MAX + 16];
    char *text = NULL;
    int fd = -1, rc = 0;
    if (!realpath(path, target)) {
        if (errno != ENOENT)
            return cairn_err_set(err, -errno, "%s: %s", path, strerror(errno));
        snprintf(target, sizeof target, "%s", path);
        /* The folder may not exist yet (a first login). */
        char dir[PATH_MAX];
        snprintf(dir, sizeof dir, "%s", path);
        char *slash = strrchr(dir, '/');
        if (slash && slash != dir) {
            *slash = '\0';
            if (mkdir(dir, 0700) != 0 && errno != EEXIST)
                return cairn_err_set(err, -errno, "%s: %s", dir,
                                     strerror(errno));
        }
    }
    snprintf(tmp, sizeof tmp, "%s.XXXXXX", target);
    if (!(text = json_dumps(root, JSON_INDENT(1)))) {
        rc = cairn_err_set(err, CAIRN_E_NOMEM, "out of memory");
        goto out;
    }
    fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0) {
        rc = cairn_err_set(err, -errno, "%s: %s", tmp, strerror(errno));
        goto out;
    }
    if (fchmod(fd, 0600) != 0 ||
        (rc = cairn_write_all(fd, text, strlen(text))) != 0 ||
        (rc = cairn_write_all(fd, "\n", 1)) != 0 || fsync(fd) != 0 ||
        close(fd) != 0) {
        int e = rc ? -rc : errno;
        fd = -1;
        unlink(tmp);
        rc = cairn_err_set(err, -e, "%s: %s", tmp, strerror(e));
        goto out;
    }
    fd = -1;
    if (rename(tmp, target) != 0) {
        int e = errno;
        unlink(tmp);
        rc = cairn_err_set(err, -e, "%s: %s", target, strerror(e));
        goto out;
    }
out:
    if (fd >= 0) {
        close(fd);
        unlink(tmp);
    }
    if (text) {
        explicit_bzero(text, strlen(text));
        free(text);
    }
    return rc;
}

/* The `auths` object, made when missing. */
static json_t *config_auths(json_t *root)
{
    json_t *auths = json_object_get(root, "auths");
    if (!auths) {
        auths = json_object();
        if (!auths || json_object_set_new(root, "auths", auths) != 0)
            return NULL;
    }
    return auths;
}

/* "auth": base64 of user:secret, as Docker writes it. */
static int entry_encode(json_t *e, const struct cairn_reg_creds *c)
{
    const char *user = c->username ? c->username : "";
    const char *secret = c->identity_token ? "" : c->secret;
    size_t n = strlen(user) + 1 + strlen(secret);
    char *plain = malloc(n + 1);
    char *b64 = malloc((n + 2) / 3 * 4 + 1);
    int rc = CAIRN_E_NOMEM;
    if (!plain || !b64)
        goto out;
    snprintf(plain, n + 1, "%s:%s", user, secret);
    EVP_EncodeBlock((unsigned char *)b64, (unsigned char *)plain, (int)n);
    json_object_del(e, "username");
    json_object_del(e, "password");
    json_object_del(e, "identitytoken");
    if (json_object_set_new(e, "auth", json_string(b64)) != 0)
        goto out;
    if (c->identity_token &&
        json_object_set_new(e, "identitytoken", json_string(c->secret)) != 0)
        goto out;
    rc = 0;
out:
    if (plain) {
        explicit_bzero(plain, n);
        free(plain);
    }
    if (b64) {
        explicit_bzero(b64, strlen(b64));
        free(b64);
    }
    return rc;
}

int cairn_reg_creds_store(const char *registry,
                          const struct cairn_reg_creds *c,
                          struct cairn_err *err)
{
    char path[PATH_MAX];
    json_t *root = NULL;
    int rc = registry_check(registry, err);
    if (rc == 0 && (!c || !c->secret || strlen(c->secret) > CREDS_SECRET_MAX ||
                    (!c->identity_token && !c->username) ||
                    (c->username && (strlen(c->username) > CREDS_SECRET_MAX ||
                                     strchr(c->username, ':')))))
        rc = cairn_err_set(err, CAIRN_E_INVAL,
                           "%s: a username without ':' and a secret are "
                           "needed", registry);
    if (rc == 0)
        rc = config_path(path, sizeof path, err);
    if (rc == 0)
        rc = config_load(path, &root, err);
    if (rc != 0)
        return rc;
    const char *helper = config_helper(root, registry);
    const char *key = server_name(registry);
    json_t *e = config_entry(root, registry, &key);
    json_t *auths = config_auths(root);
    if (!auths)
        goto nomem;
    if (!e) {
        if (!(e = json_object()) || json_object_set_new(auths, key, e) != 0)
            goto nomem;
    }
    if (helper) {
        rc = cairn_reg_credhelper_store(helper, server_name(registry), c, err);
        if (rc != 0)
            goto out;
        /* As Docker does: the file keeps an empty entry naming the
         * registry, and no secret of it. */
        json_object_del(e, "auth");
        json_object_del(e, "identitytoken");
        json_object_del(e, "username");
        json_object_del(e, "password");
    } else if (entry_encode(e, c) != 0) {
        goto nomem;
    }
    rc = config_save(path, root, err);
    goto out;
nomem:
    rc = cairn_err_set(err, CAIRN_E_NOMEM, "out of memory");
out:
    json_decref(root);
    return rc;
}

int cairn_reg_creds_erase(const char *registry, struct cairn_err *err)
{
    char path[PATH_MAX];
    json_t *root = NULL;
    int rc = registry_check(registry, err);
    if (rc == 0)
        rc = config_path(path, sizeof path, err);
    if (rc == 0)
        rc = config_load(path, &root, err);
    if (rc != 0)
        return rc;
    int found = 0;
    const char *helper = config_helper(root, registry);
    if (helper) {
        rc = cairn_reg_credhelper_erase(helper, server_name(registry), err);
        if (rc != 0 && rc != CAIRN_E_NOTFOUND)
            goto out;
        found = rc == 0;
        rc = 0;
    }
    /* Every key Docker would read for this host goes, as `docker logout`
     * erases "host", "http://host" and "https://host". */
    json_t *auths = json_object_get(root, "auths");
    const char *k;
    json_t *v;
    void *tmp;
    int removed = 0;
    json_object_foreach_safe(auths, tmp, k, v) {
        if (key_matches(k, registry)) {
            if (!helper && json_object_size(v) > 0)
                found = 1;
            json_object_del(auths, k);
            removed = 1;
        }
    }
    if (removed)
        rc = config_save(path, root, err);
    if (rc == 0 && !found)
        rc = cairn_err_set(err, CAIRN_E_NOTFOUND,
                           "%s: not logged in to %s", path, registry);
out:
    json_decref(root);
    return rc;
}
