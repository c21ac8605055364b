#!/usr/bin/env bash
# Fails when our C sources call strcpy, sprintf or atoi (unbounded copies and
# unchecked conversions). The pattern needs the call's parenthesis, so
# snprintf/strtol and mentions in comments without a call do not match.
set -u
root=${1:-.}
hits=$(cd "$root" && find common cachekey client server bench tests -name '*.[ch]' -print0 2>/dev/null |
       xargs -0 -r grep -nE '(^|[^a-zA-Z0-9_])(strcpy|sprintf|atoi)[[:space:]]*\(' || true)
if [ -n "$hits" ]; then
  echo "banned calls found (use snprintf/memcpy/strtol):"
  echo "$hits"
  exit 1
fi
echo "no banned calls"
