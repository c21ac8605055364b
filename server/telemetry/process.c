#include "server/telemetry/process.h"

#include <dirent.h>
#include <pthread.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

/* The kernel's boot time (btime of /proc/stat), seconds since the epoch. */
static int boot_time(double *out)
{
    FILE *f = fopen("/proc/stat", "re");
    if (f == NULL)
        return -errno;
    char line[256];
    int rc = -ENOENT;
    while (fgets(line, sizeof line, f) != NULL) {
        unsigned long long bt;
        if (sscanf(line, "btime %llu", &bt) == 1) {
            *out = (double)bt;
            rc = 0;
            break;
        }
    }
    fclose(f);
    return rc;
}

static pthread_once_t boot_once = PTHREAD_ONCE_INIT;
static double boot = -1; /* written once, under boot_once */

static void boot_read(void)
{
    double bt;
    if (boot_time(&bt) == 0)
        boot = bt;
}

static uint64_t fds_open(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (d == NULL)
        return 0;
    uint64_t n = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL)
        n += de->d_name[0] != '.';
    closedir(d);
    /* The directory's own descriptor was counted. */
    return n > 0 ? n - 1 : 0;
}

int cd_process_stats_get(struct cd_expo_info *info)
{
    FILE *f = fopen("/proc/self/stat", "re");
    if (f == NULL)
        return -errno;
    char buf[1024];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* The command name (field 2) may hold spaces and parentheses: the
     * fields we want follow its last ')'. */
    const char *p = strrchr(buf, ')');
    unsigned long long utime, stime, start, vsize;
    long long rss;
    if (p == NULL || sscanf(p + 2,
                            "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %*d %*d %*d "
                            "%*d %*d %*d %llu %llu %lld",
                            &utime, &stime, &start, &vsize, &rss) != 5)
        return -EINVAL;
    /* Start time never changes: boot time is read once. */
    pthread_once(&boot_once, boot_read);
    if (boot < 0)
        return -ENOENT;
    double bt = boot;
    double tck = (double)sysconf(_SC_CLK_TCK);
    struct rlimit rl;
    info->cpu_seconds = (double)(utime + stime) / tck;
    info->start_time_seconds = bt + (double)start / tck;
    info->virtual_bytes = vsize;
    info->resident_bytes = rss > 0 ? (uint64_t)rss * (uint64_t)sysconf(_SC_PAGESIZE) : 0;
    info->open_fds = fds_open();
    info->max_fds = getrlimit(RLIMIT_NOFILE, &rl) == 0 ? (uint64_t)rl.rlim_cur : 0;
    info->process = true;
    return 0;
}
