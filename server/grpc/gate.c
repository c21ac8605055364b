#include "server/grpc/gate.h"

#include <string.h>

static const char preface[24] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

enum {
    FRAME_HEADERS = 0x1,
    FRAME_SETTINGS = 0x4,
    FRAME_PUSH_PROMISE = 0x5,
    FRAME_CONTINUATION = 0x9,
    FLAG_END_HEADERS = 0x4,
};

struct cd_gate_limits cd_gate_limits_for(uint32_t max_header_size)
{
    uint64_t block = 2 * (uint64_t)max_header_size;
    if (block < (64u << 10))
        block = 64u << 10;
    if (block > UINT32_MAX)
        block = UINT32_MAX;
    /* A sender fills each frame (16 KiB) before starting the next, so a
     * legitimate block needs block / 16 KiB CONTINUATIONs; 1 KiB per
     * frame leaves room for senders with smaller frames. */
    uint64_t conts = block / 1024;
    return (struct cd_gate_limits){(uint32_t)block, (uint32_t)(conts < 64 ? 64 : conts)};
}

void cd_gate_init(struct cd_gate *g, const struct cd_gate_limits *lim)
{
    memset(g, 0, sizeof *g);
    g->lim = *lim;
}

bool cd_gate_ready(const struct cd_gate *g)
{
    return g->settings_seen;
}

static int refuse(struct cd_gate *g, int code, const char *reason)
{
    g->verdict = code;
    g->reason = reason;
    return code;
}

/* A whole frame header has arrived: decide before its payload moves. */
static int frame_check(struct cd_gate *g)
{
    const uint8_t *h = g->hdr;
    uint32_t len = (uint32_t)h[0] << 16 | (uint32_t)h[1] << 8 | h[2];
    uint8_t type = h[3], flags = h[4];
    uint32_t stream = ((uint32_t)h[5] << 24 | (uint32_t)h[6] << 16 | (uint32_t)h[7] << 8 | h[8]) &
                      0x7fffffffu;
    if (len > CD_GATE_FRAME_MAX)
        return refuse(g, CAIRN_E_TOOBIG, "frame larger than 16 KiB");
    if (!g->settings_seen) {
        /* RFC 9113 3.4: the preface ends with a SETTINGS frame. */
        if (type != FRAME_SETTINGS)
            return refuse(g, CAIRN_E_PARSE, "first frame is not SETTINGS");
        g->settings_seen = true;
    }
    g->payload_left = len;
    if (g->in_block) {
        if (type != FRAME_CONTINUATION || stream != g->block_stream)
            return refuse(g, CAIRN_E_PARSE, "header block interrupted by another frame");
        if (++g->block_conts > g->lim.max_continuations)
            return refuse(g, CAIRN_E_TOOBIG, "too many CONTINUATION frames in one header block");
    } else if (type == FRAME_CONTINUATION) {
        return refuse(g, CAIRN_E_PARSE, "CONTINUATION without HEADERS");
    } else if (type == FRAME_HEADERS || type == FRAME_PUSH_PROMISE) {
        g->in_block = true;
        g->block_stream = stream;
        g->block_bytes = 0;
        g->block_conts = 0;
    } else {
        return 0;
    }
    /* Padding and priority fields count too: they are bytes gRPC reads. */
    g->block_bytes += len;
    if (g->block_bytes > g->lim.max_block)
        return refuse(g, CAIRN_E_TOOBIG, "header block larger than the limit");
    if (flags & FLAG_END_HEADERS)
        g->in_block = false;
    return 0;
}

int cd_gate_feed(struct cd_gate *g, const uint8_t *p, size_t n)
{
    while (n > 0 && g->verdict == 0) {
        size_t k;
        if (g->preface_got < sizeof preface) {
            k = sizeof preface - g->preface_got;
            k = k < n ? k : n;
            if (memcmp(p, preface + g->preface_got, k) != 0)
                return refuse(g, CAIRN_E_PARSE, "not the HTTP/2 client preface");
            g->preface_got += (uint32_t)k;
        } else if (g->payload_left > 0) {
            k = g->payload_left < n ? g->payload_left : n;
            g->payload_left -= (uint32_t)k;
        } else {
            k = sizeof g->hdr - g->hdr_got;
            k = k < n ? k : n;
            memcpy(g->hdr + g->hdr_got, p, k);
            g->hdr_got += (uint32_t)k;
            if (g->hdr_got == sizeof g->hdr) {
                g->hdr_got = 0;
                frame_check(g);
            }
        }
        p += k;
        n -= k;
    }
    return g->verdict;
}
