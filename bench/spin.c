/* bench_spin MS: burns MS milliseconds of this process's CPU on one
 * thread and exits. bench/remote starts four of them the way it starts
 * four builders, with the same CPU as the builders had, as the same-run
 * control for "wall / CPU floor": what four processes that only compute
 * reach on this machine with this launcher (fork and exec, the scheduler,
 * the last one finishing alone), with no disk, network or waits. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

/* Process CPU time in milliseconds. */
static double cpu_ms(void)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts) != 0)
        return -1;
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

int main(int argc, char **argv)
{
    char *end = NULL;
    errno = 0;
    double ms = argc == 2 ? strtod(argv[1], &end) : -1;
    if (argc != 2 || errno != 0 || end == argv[1] || *end != '\0' || ms < 0 ||
        ms > 600000) {
        fprintf(stderr, "usage: bench_spin MS (0..600000)\n");
        return 2;
    }
    volatile unsigned long sink = 0;
    for (;;) {
        for (unsigned i = 0; i < 20000; i++)
            sink += i;
        double now = cpu_ms();
        if (now < 0) {
            perror("bench_spin: clock_gettime");
            return 1;
        }
        if (now >= ms)
            break;
    }
    return 0;
}
