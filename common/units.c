#include "units.h"

#include "error.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* The shift of the unit s starts with (0 without one) and where the
 * unit, its "i" and its "B" end. */
static unsigned unit_shift(const char *s, const char **end)
{
    static const char units[] = "kmgt";
    const char *u = *s ? strchr(units, tolower((unsigned char)*s)) : NULL;
    unsigned shift = 0;
    if (u != NULL) {
        shift = 10 * (unsigned)(u - units + 1);
        s++;
        if (*s == 'i')
            s++;
    }
    if (*s == 'B' || *s == 'b')
        s++;
    *end = s;
    return shift;
}

int cairn_units_size_parse(const char *s, unsigned flags, uint64_t max,
                           uint64_t *out)
{
    if (s == NULL)
        return CAIRN_E_INVAL;
    char *num_end = NULL;
    double d = 0;
    unsigned long long n = 0;
    errno = 0;
    if (flags & CAIRN_UNITS_FRACTION) {
        d = strtod(s, &num_end);
        /* !(d >= 0) also turns away NaN. */
        if (errno || num_end == s || !(d >= 0))
            return CAIRN_E_INVAL;
    } else {
        if (*s < '0' || *s > '9')
            return CAIRN_E_INVAL;
        n = strtoull(s, &num_end, 10);
        if (errno)
            return CAIRN_E_INVAL;
    }
    const char *end;
    unsigned shift = unit_shift(num_end, &end);
    if ((flags & CAIRN_UNITS_PER_SECOND) && strcmp(end, "/s") == 0)
        end += 2;
    if (*end != '\0')
        return CAIRN_E_INVAL;
    if (flags & CAIRN_UNITS_FRACTION) {
        double v = d * (double)(1ull << shift);
        /* 2^64 bounds the conversion below whatever max is. */
        if (v > (double)max || v >= 18446744073709551616.0)
            return CAIRN_E_INVAL;
        *out = (uint64_t)v;
        return 0;
    }
    if (n > (max >> shift))
        return CAIRN_E_INVAL;
    *out = (uint64_t)n << shift;
    return 0;
}
