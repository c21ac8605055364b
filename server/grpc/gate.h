/* The HTTP/2 frame gate: what cairnd checks of the bytes a client sends
 * before gRPC sees them (server/grpc/relay.c feeds it; docs/security.md,
 * "cairnd: connections, headers and instance names").
 *
 * gRPC 1.51 parses a header field that spans frames in quadratic time and
 * applies its metadata limit only once a field is complete
 * (CVE-2023-33953), so the size of a header block must be bounded before
 * gRPC reads it. The gate reads only the HTTP/2 framing: the 24-byte
 * client preface, then each frame's 9-byte header (length, type, flags,
 * stream). Payloads pass unread. It refuses, for good:
 *   - bytes that are not the client preface;
 *   - a frame longer than CD_GATE_FRAME_MAX (gRPC announces no larger
 *     SETTINGS_MAX_FRAME_SIZE, so such a frame is a protocol error anyway);
 *   - a header block (HEADERS or PUSH_PROMISE without END_HEADERS, then
 *     CONTINUATION frames) whose payload bytes pass limits.max_block, or
 *     that has more than limits.max_continuations CONTINUATION frames
 *     (empty CONTINUATIONs cost gRPC work without growing the block);
 *   - a CONTINUATION outside a block, or any other frame, or a
 *     CONTINUATION of another stream, inside one (RFC 9113 6.10: a
 *     connection error).
 * A refusal is decided at the frame header, before any byte of the frame
 * that breaks the rule has to be forwarded.
 *
 * A plain value type; one per connection, not thread-safe. */
#ifndef CAIRN_SERVER_GATE_H
#define CAIRN_SERVER_GATE_H

#include "common/error.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CD_GATE_FRAME_MAX 16384u

struct cd_gate_limits {
    uint32_t max_block;         /* header block payload bytes, >= 1 */
    uint32_t max_continuations; /* CONTINUATION frames per block */
};

struct cd_gate {
    struct cd_gate_limits lim;
    uint32_t preface_got;   /* preface bytes matched so far (24: done) */
    uint8_t hdr[9];         /* the frame header being read */
    uint32_t hdr_got;
    uint32_t payload_left;  /* payload bytes of the current frame to pass */
    bool settings_seen;     /* the first frame (SETTINGS) arrived */
    bool in_block;          /* a header block is open */
    uint32_t block_stream;
    uint64_t block_bytes;
    uint32_t block_conts;
    int verdict;            /* 0, or the refusal (sticky) */
    const char *reason;     /* static text for the log, or NULL */
};

/* The limits a server whose metadata limit is max_header_size bytes
 * (decoded: names + values + 32 per field) should gate with. A
 * legitimate encoder never makes a block longer than its decoded size
 * (literal fields cost at most a few bytes of lengths each, less than the
 * 32 counted per field, and Huffman is only used when it is shorter), so
 * twice the limit, at least 64 KiB, never refuses what gRPC would accept;
 * a field of 64 KiB costs gRPC 1.51 well under a millisecond. */
struct cd_gate_limits cd_gate_limits_for(uint32_t max_header_size);

/* Starts a connection's gate. Writes *g. */
void cd_gate_init(struct cd_gate *g, const struct cd_gate_limits *lim);

/* Checks the next n client bytes (any split: a frame header may arrive
 * one byte at a time). Returns 0 when they may be forwarded, or
 * CAIRN_E_PARSE (protocol violation) / CAIRN_E_TOOBIG (a limit), after
 * which the connection must be closed; g->reason says why. Once refused,
 * every later call returns the same code. */
int cd_gate_feed(struct cd_gate *g, const uint8_t *p, size_t n);

/* True once the preface and the client's first SETTINGS frame header
 * have arrived: the HTTP/2 handshake the handshake timeout waits for. */
bool cd_gate_ready(const struct cd_gate *g);

#endif
