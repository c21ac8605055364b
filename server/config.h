/* cairnd's command line: one table of options (server/config.c), parsed
 * into struct cd_config. Strings point into argv (borrowed for the life of
 * the process). Not thread-safe; used once by main(). */
#ifndef CAIRN_SERVER_CONFIG_H
#define CAIRN_SERVER_CONFIG_H

#include "common/error.h"

#include <stdbool.h>
#include <stdint.h>

struct cd_config {
    const char *listen;       /* --listen ADDR:PORT */
    const char *dir;          /* --dir PATH */
    uint64_t max_size;        /* --max-size SIZE */
    const char *tokens;       /* --tokens FILE */
    const char *tls_cert;     /* --tls-cert FILE */
    const char *tls_key;      /* --tls-key FILE */
    const char *tls_client_ca; /* --tls-client-ca FILE */
    unsigned threads;         /* --threads N (default: online CPUs) */
    const char *log_level;    /* --log-level L */
    const char *log_format;   /* --log-format text|json */
    const char *health_listen;  /* --health-listen ADDR:PORT (NULL: none) */
    const char *metrics_listen; /* --metrics-listen ADDR:PORT (NULL: none) */
    const char *metrics_token_file; /* --metrics-token-file FILE */
    unsigned upload_ttl_s;    /* --upload-idle-timeout DURATION */
    uint64_t stage_batch;     /* --stage-batch SIZE (whole MiB) */
    unsigned stats_interval_s; /* --stats-interval DURATION */
    unsigned drain_timeout_s; /* --drain-timeout DURATION */
    unsigned shutdown_delay_s; /* --shutdown-delay DURATION (0: drain at once) */
    unsigned reverify_s;      /* --reverify-after DURATION */
    bool no_read_verify;      /* --no-read-verify */
    bool no_claims;           /* --no-claims: cairn.claim.v1 is UNIMPLEMENTED */
    /* Connection limits, passed to gRPC (server/grpc/rpc.h,
     * docs/security.md). */
    uint64_t max_header_size; /* --max-header-size SIZE */
    unsigned max_streams;     /* --max-streams N (per connection) */
    unsigned handshake_timeout_s; /* --handshake-timeout DURATION */
    unsigned conn_idle_s;     /* --max-connection-idle DURATION (0: never) */
    unsigned conn_age_s;      /* --max-connection-age DURATION (0: never) */
    unsigned conn_grace_s;    /* --max-connection-age-grace DURATION */
    unsigned max_conns;       /* --max-connections N (in total) */
    unsigned max_conns_per_ip; /* --max-connections-per-ip N */
    bool no_conn_limits;      /* hidden: gRPC's defaults and no gate, for tests */
    bool no_gate;             /* hidden: gRPC's own listener, for measurements */
    /* The durable tier (docs/storage.md "Two tiers"); NULL: LMDB only. */
    const char *backend;      /* --backend s3://BUCKET[/PREFIX] */
    const char *s3_endpoint;  /* --s3-endpoint URL */
    const char *s3_region;    /* --s3-region R (NULL: us-east-1) */
    bool s3_path_style;       /* --s3-path-style */
    const char *s3_credentials_file; /* --s3-credentials-file FILE */
    bool verify;              /* --verify: scrub --dir and exit */
    bool help;
};

/* Parses "10G", "512M", "64K", "123" (bytes; K/M/G/T are powers of 1024,
 * an optional trailing "B"/"iB" is accepted). Returns 0 or CAIRN_E_INVAL. */
int cd_size_parse(const char *s, uint64_t *out);

/* Parses a duration in whole seconds: "90s", "10m", "2h", "1d", or a
 * bare number of seconds. Returns 0 or CAIRN_E_INVAL (also on overflow of
 * an unsigned). */
int cd_duration_parse(const char *s, unsigned *out);

/* Fills cfg from argv (defaults first). Returns 0 or CAIRN_E_INVAL with
 * err naming the option. cfg->help set: print cd_config_usage. */
int cd_config_parse(int argc, char **argv, struct cd_config *cfg, struct cairn_err *err);

/* Writes the usage text (from the option table) to stdout. */
void cd_config_usage(void);

#endif
