/* Sizes written the way people write them ("10G", "512MiB", "0.5k",
 * "1M/s"): the one grammar cairn's config and cairnd's flags share.
 * Thread-safe (strtod reads the locale; both programs keep "C"). */
#ifndef CAIRN_COMMON_UNITS_H
#define CAIRN_COMMON_UNITS_H

#include <stdint.h>

/* Flags of cairn_units_size_parse. */
enum {
    /* The number may be anything strtod reads ("0.5", "1e3"); without
     * it, only decimal digits (no sign, no space). */
    CAIRN_UNITS_FRACTION = 1u << 0,
    /* A trailing "/s" is accepted (a rate). */
    CAIRN_UNITS_PER_SECOND = 1u << 1,
};

/* Parses a number, then an optional unit k, m, g or t (powers of 1024,
 * either case) with an optional "i", then an optional "B" or "b", then
 * (with CAIRN_UNITS_PER_SECOND) an optional "/s", and nothing else.
 * A fraction is truncated to whole bytes. Returns 0 and *out, or
 * CAIRN_E_INVAL when s does not parse, is negative or is above max. */
int cairn_units_size_parse(const char *s, unsigned flags, uint64_t max,
                           uint64_t *out);

#endif
