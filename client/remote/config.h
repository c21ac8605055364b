/* Remote cache settings from $XDG_CONFIG_HOME/cairn/config (default
 * ~/.config/cairn/config) and the environment, so a CI fleet configures
 * the cache once. Later sources override earlier ones: the file, then
 * CAIRN_CACHE (URLs separated by spaces or commas), CAIRN_CACHE_MODE,
 * CAIRN_CACHE_TOKEN, CAIRN_CACHE_CA, CAIRN_CACHE_TIMEOUT,
 * CAIRN_CACHE_MAX_LAYER, CAIRN_CACHE_MIN_RATE, CAIRN_CACHE_CLAIM_TTL,
 * CAIRN_SIGN_KEY, CAIRN_TRUST (entries separated by ';'), then
 * command-line flags (set by the caller). The file has "key = value"
 * lines; '#' starts a comment; keys: cache (repeatable), cache-mode,
 * cache-token, cache-ca, cache-timeout, cache-max-layer, cache-min-rate,
 * cache-claim-ttl (client/remote/claim.h); for signed entries
 * (client/remote/sign.h) sign-key (a private key file: uploads are
 * signed with it) and trust (repeatable: "SCOPE KEY", a public key
 * trusted for a cache URL, an instance or "*"; a cache some trust
 * covers accepts only entries signed by its keys); and for registries
 * (docs/registry.md) insecure-registry (repeatable: HOST[:PORT] reached
 * without TLS checks or over plain HTTP).
 *
 * Not thread-safe; one owner.
 */
#ifndef CAIRN_CLIENT_CONFIG_H
#define CAIRN_CLIENT_CONFIG_H

#include "common/error.h"
#include "common/strvec.h"

#include <stdbool.h>
#include <stdint.h>

struct cairn_config {
    struct cairn_strvec urls; /* owned */
    bool read_only;           /* --cache-mode read */
    char *token;              /* owned, may be NULL */
    char *ca_file;            /* owned, may be NULL */
    int64_t timeout_ms;       /* 0: default */
    /* A layer blob larger than this is not fetched (its step runs); its
     * uncompressed tar may be CAIRN_CONFIG_TAR_FACTOR times larger, no
     * more (decompression bombs). 0: CAIRN_CONFIG_MAX_LAYER. */
    int64_t max_layer;
    /* A blob stream that moves fewer bytes than this per second over a
     * cache-timeout window is abandoned (stall, trickle). 0: default. */
    int64_t min_rate;
    /* How long a claim on a step lasts unless renewed (client/remote/
     * claim.h); the owner renews every third of it. 0: the default,
     * CAIRN_CONFIG_CLAIM_TTL; -1: "off", steps are never claimed. */
    int64_t claim_ttl_ms;
    /* insecure-registry: registries ("host[:port]") reached without TLS
     * checks (client/registry/transport.h); owned. */
    struct cairn_strvec insecure;
    char *sign_key;            /* sign-key: owned, may be NULL */
    struct cairn_strvec trust; /* trust: "SCOPE KEY" entries, checked; owned */
};

#define CAIRN_CONFIG_MAX_LAYER ((int64_t)10 << 30)
#define CAIRN_CONFIG_TAR_FACTOR 4
#define CAIRN_CONFIG_MIN_RATE ((int64_t)256 << 10)
#define CAIRN_CONFIG_CLAIM_TTL ((int64_t)30000)
#define CAIRN_CONFIG_MAX_CLAIM_TTL ((int64_t)600000)

void cairn_config_init(struct cairn_config *c);
/* Frees what c owns. Accepts NULL. */
void cairn_config_clear(struct cairn_config *c);

/* Reads the file (a missing file is fine) and the environment into c.
 * A line the parser does not understand is CAIRN_E_PARSE with path:line. */
int cairn_config_load(struct cairn_config *c, struct cairn_err *err);

/* Applies one setting by name ("cache", "cache-mode", ...), as the file,
 * the environment and the flags do. "cache" appends; an empty "cache"
 * value clears the list. */
int cairn_config_set(struct cairn_config *c, const char *key,
                     const char *value, struct cairn_err *err);

/* Parses a size: bytes, or a number with k, m, g or t (binary units,
 * either case, an optional "B" or "iB" and, with per_second, "/s"). */
int cairn_config_size(const char *s, bool per_second, int64_t *out);

/* Parses a duration: "30s", "1500ms", "2m", or plain seconds. */
int cairn_config_duration_ms(const char *s, int64_t *ms);

#endif
