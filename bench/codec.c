/* bench_codec: times the layer codecs on one file held in memory, to choose
 * the defaults (docs/build.md, "Compression").
 *
 *   bench_codec FILE
 *
 * One line per codec, level and thread count:
 *   codec=C level=L threads=T seconds=S cpu_seconds=U bytes=N ratio=R
 *   mb_per_s=M
 * (cpu_seconds: the process's CPU time over the run, every thread; on a
 * shared machine the steadier of the two.)
 * "zlib" is the single-stream gzip cairn wrote first (deflate with the
 * gzip wrapper on one core); "gzm" the gzip layers use now (libdeflate,
 * one member per block, client/store/layer_gzm.h, on the threads);
 * "deflate-noprobe" libdeflate on each block on one thread without the
 * incompressible-block probe, to weigh the probe; "zstd" zstd's
 * streaming API with the layer writer's parameters.
 * The input is read whole first (capped at 1 GiB), so only compression is
 * timed, not the disk. */
#include "client/store/layer_pgzip.h"

#include <libdeflate.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zlib.h>
#include <zstd.h>

#define CAP ((size_t)1 << 30)
#define CHUNK ((size_t)64 << 10) /* as the tar writer hands out bytes */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The CPU time at the start of the codec being timed, for report(). */
static double cpu0;

static int count_sink(void *arg, const void *p, size_t n)
{
    (void)p;
    *(size_t *)arg += n;
    return 0;
}

static void report(const char *codec, int level, unsigned threads, double s,
                   size_t out, size_t in)
{
    printf("codec=%s level=%d threads=%u seconds=%.3f cpu_seconds=%.3f "
           "bytes=%zu ratio=%.2f mb_per_s=%.1f\n",
           codec, level, threads, s, cpu_s() - cpu0, out,
           out ? (double)in / (double)out : 0, (double)in / 1e6 / s);
    fflush(stdout);
}

static int run_zlib(const uint8_t *in, size_t n, int level)
{
    static uint8_t out[1 << 20];
    z_stream z;
    memset(&z, 0, sizeof z);
    if (deflateInit2(&z, level, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) !=
        Z_OK)
        return 1;
    double t0 = now_s();
    cpu0 = cpu_s();
    size_t total = 0;
    for (size_t off = 0;; off += CHUNK) {
        size_t k = off < n ? (n - off < CHUNK ? n - off : CHUNK) : 0;
        int flush = off + k >= n ? Z_FINISH : Z_NO_FLUSH;
        z.next_in = (Bytef *)(uintptr_t)(in + off);
        z.avail_in = (uInt)k;
        int zr;
        do {
            z.next_out = out;
            z.avail_out = sizeof out;
            zr = deflate(&z, flush);
            total += sizeof out - z.avail_out;
        } while (z.avail_out == 0);
        if (flush == Z_FINISH) {
            if (zr != Z_STREAM_END)
                return 1;
            break;
        }
    }
    report("zlib", level, 1, now_s() - t0, total, n);
    deflateEnd(&z);
    return 0;
}

static int run_pgzip(const uint8_t *in, size_t n, int level, unsigned threads)
{
    size_t total = 0;
    struct layer_pgzip *g = NULL;
    if (layer_pgzip_new(level, threads, count_sink, &total, &g) != 0)
        return 1;
    double t0 = now_s();
    cpu0 = cpu_s();
    for (size_t off = 0; off < n; off += CHUNK) {
        size_t k = n - off < CHUNK ? n - off : CHUNK;
        if (layer_pgzip_write(g, in + off, k) != 0)
            return 1;
    }
    if (layer_pgzip_finish(g) != 0)
        return 1;
    report("gzm", level, threads, now_s() - t0, total, n);
    layer_pgzip_free(g);
    return 0;
}

static int run_noprobe(const uint8_t *in, size_t n, int level)
{
    struct libdeflate_compressor *c = libdeflate_alloc_compressor(level);
    size_t cap = c ? libdeflate_deflate_compress_bound(c, LAYER_GZM_BLOCK) : 0;
    uint8_t *out = malloc(cap ? cap : 1);
    if (c == NULL || out == NULL)
        return 1;
    double t0 = now_s();
    cpu0 = cpu_s();
    size_t total = 0;
    for (size_t off = 0; off < n; off += LAYER_GZM_BLOCK) {
        size_t k = n - off < LAYER_GZM_BLOCK ? n - off : LAYER_GZM_BLOCK;
        size_t r = libdeflate_deflate_compress(c, in + off, k, out, cap);
        if (r == 0)
            return 1;
        total += r;
    }
    report("deflate-noprobe", level, 1, now_s() - t0, total, n);
    libdeflate_free_compressor(c);
    free(out);
    return 0;
}

static int run_zstd(const uint8_t *in, size_t n, int level, unsigned threads)
{
    static uint8_t out[1 << 20];
    ZSTD_CCtx *zc = ZSTD_createCCtx();
    if (zc == NULL ||
        ZSTD_isError(
            ZSTD_CCtx_setParameter(zc, ZSTD_c_compressionLevel, level)) ||
        ZSTD_isError(ZSTD_CCtx_setParameter(zc, ZSTD_c_checksumFlag, 1)) ||
        ZSTD_isError(
            ZSTD_CCtx_setParameter(zc, ZSTD_c_nbWorkers, (int)threads)) ||
        ZSTD_isError(ZSTD_CCtx_setParameter(zc, ZSTD_c_jobSize, 2 << 20)))
        return 1;
    double t0 = now_s();
    cpu0 = cpu_s();
    size_t total = 0;
    for (size_t off = 0;; off += CHUNK) {
        size_t k = off < n ? (n - off < CHUNK ? n - off : CHUNK) : 0;
        ZSTD_EndDirective end = off + k >= n ? ZSTD_e_end : ZSTD_e_continue;
        ZSTD_inBuffer ib = {in + off, k, 0};
        size_t zr;
        do {
            ZSTD_outBuffer ob = {out, sizeof out, 0};
            zr = ZSTD_compressStream2(zc, &ob, &ib, end);
            if (ZSTD_isError(zr))
                return 1;
            total += ob.pos;
        } while (end == ZSTD_e_end ? zr != 0 : ib.pos < ib.size);
        if (end == ZSTD_e_end)
            break;
    }
    report("zstd", level, threads, now_s() - t0, total, n);
    ZSTD_freeCCtx(zc);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: bench_codec FILE\n");
        return 2;
    }
    FILE *f = fopen(argv[1], "rb");
    if (f == NULL) {
        perror(argv[1]);
        return 1;
    }
    uint8_t *in = malloc(CAP);
    size_t n = in ? fread(in, 1, CAP, f) : 0;
    fclose(f);
    if (in == NULL || n == 0) {
        fprintf(stderr, "bench_codec: cannot read %s\n", argv[1]);
        return 1;
    }
    int rc = run_zlib(in, n, 6);
    static const int levels[] = {1, 3, 6};
    for (size_t i = 0; rc == 0 && i < 3; i++)
        for (unsigned t = 1; rc == 0 && t <= 2; t++)
            rc = run_pgzip(in, n, levels[i], t);
    if (rc == 0)
        rc = run_noprobe(in, n, 1);
    for (unsigned t = 1; rc == 0 && t <= 2; t++)
        rc = run_zstd(in, n, 3, t);
    free(in);
    if (rc != 0)
        fprintf(stderr, "bench_codec: a codec failed\n");
    return rc;
}
