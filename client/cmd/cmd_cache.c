/* cairn cache ping|stats URL: what an operator asks of a cache endpoint.
 * Both use only the protocol (Capabilities and one action-cache lookup),
 * so they work against any REAPI cache. */
#include "client/cmd/commands.h"

#include "client/remote/cache.h"
#include "client/remote/config.h"
#include "client/remote/remote.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void cache_usage(FILE *out)
{
    fprintf(out,
            "Usage: cairn cache ping|stats [OPTIONS] URL\n\n"
            "  ping   capabilities, round-trip latency and what the token "
            "may do\n"
            "  stats  what the server tells about itself through the "
            "protocol\n\n"
            "Options:\n"
            "      --cache-token TOKEN   bearer token (or CAIRN_CACHE_TOKEN)\n"
            "      --cache-ca FILE       CA certificates for grpcs:// (or "
            "CAIRN_CACHE_CA)\n"
            "      --cache-timeout DUR   per-call deadline (default 30s)\n");
}

static double now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

static int run(bool stats, struct cairn_config *cfg, const char *url)
{
    char target[256], instance[256];
    bool tls = false;
    struct cairn_err err;
    cairn_err_clear(&err);
    if (cairn_cache_url_parse(url, target, sizeof target, instance,
                              sizeof instance, &tls, &err) != 0) {
        fprintf(stderr, "cairn cache: %s\n", err.msg);
        return 2;
    }
    struct cairn_remote_opts ro = {.target = target,
                                   .tls = tls,
                                   .ca_file = cfg->ca_file,
                                   .token = cfg->token,
                                   .timeout_ms = cfg->timeout_ms};
    struct cairn_remote *r = NULL;
    if (cairn_remote_open(&ro, &r, &err) != 0) {
        fprintf(stderr, "cairn cache: %s\n", err.msg);
        return 1;
    }
    int status = 1;
    struct cairn_remote_caps caps;
    double t0 = now_ms();
    int rc = cairn_remote_capabilities(r, instance, &caps, &err);
    double t1 = now_ms();
    if (rc) {
        fprintf(stderr, "cairn cache: %s\n", err.msg);
        goto out;
    }
    /* A lookup of a key nobody has: a second round trip through the
     * action cache, and the proof that the token may read it (NOT_FOUND
     * is the good answer). */
    struct cairn_remote_digest probe = {.size = 0};
    memset(probe.hash, '0', 64);
    probe.hash[64] = '\0';
    struct cairn_remote_result res;
    cairn_err_clear(&err);
    double t2 = now_ms();
    rc = cairn_remote_ac_get(r, instance, &probe, &res, &err);
    double t3 = now_ms();
    bool can_read = rc == 0 || rc == CAIRN_E_NOTFOUND;
    printf("cache %s: %s (%s%s)\n", url, can_read ? "ok" : "NOT USABLE",
           tls ? "TLS" : "plaintext", cfg->token ? ", token" : "");
    printf("  instance        %s\n", instance[0] ? instance : "(default)");
    printf("  latency         %.1f ms (capabilities), %.1f ms (action "
           "cache)\n",
           t1 - t0, t3 - t2);
    printf("  api             %d.%d-%d.%d\n", caps.low_major, caps.low_minor,
           caps.high_major, caps.high_minor);
    printf("  digest          %s\n", caps.sha256 ? "sha256" : "no sha256 (unusable)");
    printf("  access          %s%s\n", can_read ? "read" : "no read",
           caps.update_enabled ? ", write" : " (read-only)");
    if (!can_read)
        printf("  error           %s\n", err.msg);
    if (stats)
        printf("  max batch       %lld bytes\n", (long long)caps.max_batch);
    status = can_read && caps.sha256 ? 0 : 1;
out:
    cairn_remote_close(r);
    return status;
}

int cairn_cmd_cache(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "--help") == 0) {
        cache_usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    bool stats;
    if (strcmp(argv[1], "ping") == 0)
        stats = false;
    else if (strcmp(argv[1], "stats") == 0)
        stats = true;
    else {
        fprintf(stderr, "cairn cache: unknown subcommand \"%s\"\n", argv[1]);
        cache_usage(stderr);
        return 2;
    }
    struct cairn_config cfg;
    cairn_config_init(&cfg);
    struct cairn_err err;
    cairn_err_clear(&err);
    int status = 2;
    const char *url = NULL;
    if (cairn_config_load(&cfg, &err) != 0) {
        fprintf(stderr, "cairn cache: %s\n", err.msg);
        goto out;
    }
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        static const char *const keys[] = {"cache-token", "cache-ca",
                                           "cache-timeout"};
        bool matched = false;
        for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++) {
            size_t n = strlen(keys[k]);
            if (strncmp(a, "--", 2) != 0 || strncmp(a + 2, keys[k], n) != 0)
                continue;
            const char *v = NULL;
            if (a[2 + n] == '=')
                v = a + 3 + n;
            else if (a[2 + n] == '\0' && i + 1 < argc)
                v = argv[++i];
            else
                continue;
            matched = true;
            if (cairn_config_set(&cfg, keys[k], v, &err) != 0) {
                fprintf(stderr, "cairn cache: %s\n", err.msg);
                goto out;
            }
        }
        if (matched)
            continue;
        if (a[0] == '-') {
            fprintf(stderr, "cairn cache: unknown option %s\n", a);
            goto out;
        }
        if (url) {
            fprintf(stderr, "cairn cache: one URL only\n");
            goto out;
        }
        url = a;
    }
    if (url == NULL) {
        fprintf(stderr, "cairn cache: missing URL\n");
        goto out;
    }
    status = run(stats, &cfg, url);
out:
    cairn_config_clear(&cfg);
    return status;
}
