/* bench_gunzip: times the check a fetched gzip layer gets (cairn_layer_
 * verify_fd: both sha256s, the tar's entries, the decompression) on one
 * tar, written as cairn's member layout (client/store/layer_gzm.h), once
 * read by zlib on one core and once by the parallel member reader
 * (client/store/layer_gunzip.c) at 1 and 2 threads.
 *
 *   bench_gunzip TAR [ROUNDS]
 *
 * Both blobs hold the same members, deflated by libdeflate at level 1;
 * the zlib one differs only in its first header, an ordinary 10-byte
 * one, which sends the reader down its zlib path (as a registry's or an
 * old store's layer goes) over the same deflate data. The blobs are
 * written next to TAR and read from the page cache. Rounds alternate the
 * three readers; one line per reader with the medians:
 *   reader=R threads=T seconds=S cpu_seconds=C tar_mb_per_s=M vs_zlib=X
 * where cpu_seconds counts every thread (getrusage), and vs_zlib is the
 * zlib median over this one (higher is faster). */
#include "cachekey/digest.h"
#include "client/store/layer.h"
#include "client/store/layer_gzm.h"

#include <fcntl.h>
#include <libdeflate.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#define CAP ((size_t)1 << 30)
#define MAX_ROUNDS 50

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* CPU seconds of every thread of the process so far. */
static double cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
           (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

static void le32_put(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

/* Writes in[0..n) to path as members of LAYER_GZM_BLOCK bytes; plain: the
 * first header is an ordinary gzip header. */
static int blob_write(const char *path, const uint8_t *in, size_t n, bool plain)
{
    struct libdeflate_compressor *c = libdeflate_alloc_compressor(1);
    size_t cap = c ? libdeflate_deflate_compress_bound(c, LAYER_GZM_BLOCK) : 0;
    uint8_t *d = malloc(cap ? cap : 1);
    FILE *f = fopen(path, "wb");
    int rc = c == NULL || d == NULL || f == NULL;
    for (size_t off = 0; rc == 0 && off < n; off += LAYER_GZM_BLOCK) {
        size_t k = n - off < LAYER_GZM_BLOCK ? n - off : LAYER_GZM_BLOCK;
        size_t dn = libdeflate_deflate_compress(c, in + off, k, d, cap);
        uint8_t head[LAYER_GZM_HEAD] = {0x1f, 0x8b, 8, 4, 0,    0,    0, 0,
                                        0,    0xff, 8, 0, 0x43, 0x7a, 4, 0};
        size_t hn = LAYER_GZM_HEAD;
        if (plain && off == 0) {
            head[3] = 0;
            hn = 10;
        }
        le32_put(head + 16, (uint32_t)(hn + dn + LAYER_GZM_TRAILER));
        uint8_t t[LAYER_GZM_TRAILER];
        le32_put(t, libdeflate_crc32(0, in + off, k));
        le32_put(t + 4, (uint32_t)k);
        if (dn == 0 || fwrite(head, 1, hn, f) != hn ||
            fwrite(d, 1, dn, f) != dn || fwrite(t, 1, sizeof t, f) != sizeof t)
            rc = 1;
    }
    if (f != NULL && fclose(f) != 0)
        rc = 1;
    free(d);
    libdeflate_free_compressor(c);
    return rc;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* One verify of path against want; seconds, or < 0 on failure; the CPU
 * seconds it took into *cpu. */
static double verify_once(const char *path,
                          const struct cairn_layer_expect *want, double *cpu)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    struct cairn_err err = {0};
    double c0 = cpu_s();
    double t0 = now_s();
    int rc = cairn_layer_verify_fd(fd, want, &err);
    double s = now_s() - t0;
    *cpu = cpu_s() - c0;
    close(fd);
    if (rc != 0) {
        fprintf(stderr, "bench_gunzip: %s\n", err.msg);
        return -1;
    }
    return s;
}

int main(int argc, char **argv)
{
    if (argc < 2 || argc > 3) {
        fprintf(stderr, "usage: bench_gunzip TAR [ROUNDS]\n");
        return 2;
    }
    int rounds = argc == 3 ? (int)strtol(argv[2], NULL, 10) : 5;
    if (rounds < 1 || rounds > MAX_ROUNDS)
        rounds = 5;
    FILE *f = fopen(argv[1], "rb");
    uint8_t *in = malloc(CAP);
    size_t n = f && in ? fread(in, 1, CAP, f) : 0;
    if (f != NULL)
        fclose(f);
    if (n == 0) {
        fprintf(stderr, "bench_gunzip: cannot read %s\n", argv[1]);
        return 1;
    }
    char gzm[4096], plain[4096];
    snprintf(gzm, sizeof gzm, "%s.gzm", argv[1]);
    snprintf(plain, sizeof plain, "%s.plain", argv[1]);
    if (blob_write(gzm, in, n, false) != 0 ||
        blob_write(plain, in, n, true) != 0) {
        fprintf(stderr, "bench_gunzip: cannot write the blobs\n");
        return 1;
    }
    free(in);
    struct {
        const char *name, *path;
        const char *threads;
        char digest[CAIRN_DIGEST_STR_LEN];
        struct cairn_layer_desc d;
        double s[MAX_ROUNDS];
        double cpu[MAX_ROUNDS];
    } r[] = {{.name = "zlib", .path = plain, .threads = "1"},
             {.name = "members", .path = gzm, .threads = "1"},
             {.name = "members", .path = gzm, .threads = "2"}};
    const size_t nr = sizeof r / sizeof r[0];
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < nr; i++) {
        struct cairn_err err = {0};
        rc = cairn_layer_digest_file(r[i].path, &r[i].d, &err);
        if (rc != 0)
            fprintf(stderr, "bench_gunzip: %s\n", err.msg);
    }
    if (rc == 0 && strcmp(r[0].d.diff_id, r[1].d.diff_id) != 0) {
        fprintf(stderr, "bench_gunzip: the two readers disagree\n");
        rc = 1;
    }
    for (int k = 0; rc == 0 && k < rounds; k++) {
        for (size_t i = 0; rc == 0 && i < nr; i++) {
            setenv("CAIRN_LAYER_THREADS", r[i].threads, 1);
            struct cairn_layer_expect want = {r[i].d.digest, r[i].d.diff_id,
                                              CAIRN_MEDIA_LAYER_GZIP,
                                              r[i].d.size, 0};
            r[i].s[k] = verify_once(r[i].path, &want, &r[i].cpu[k]);
            rc = r[i].s[k] < 0;
        }
    }
    double zlib_med = 0;
    for (size_t i = 0; rc == 0 && i < nr; i++) {
        qsort(r[i].s, (size_t)rounds, sizeof r[i].s[0], cmp_double);
        qsort(r[i].cpu, (size_t)rounds, sizeof r[i].cpu[0], cmp_double);
        double med = r[i].s[rounds / 2];
        if (i == 0)
            zlib_med = med;
        printf("reader=%s threads=%s seconds=%.3f cpu_seconds=%.3f "
               "tar_mb_per_s=%.1f blob_bytes=%lld vs_zlib=%.2f\n",
               r[i].name, r[i].threads, med, r[i].cpu[rounds / 2],
               (double)n / 1e6 / med, (long long)r[i].d.size, zlib_med / med);
    }
    unlink(gzm);
    unlink(plain);
    return rc;
}
