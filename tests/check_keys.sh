#!/usr/bin/env bash
# Fails when a private key is tracked (or, outside a git checkout, present
# among the sources): tests make their keys and certificates in their own
# temporary directories at test time.
set -u
root=${1:-.}
# Built from two halves so this file does not match its own pattern.
begin='-----BEGIN'
pat="$begin [A-Z0-9 ]*PRIVATE KEY-----"
cd "$root" || exit 1
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  hits=$(git grep -lE -e "$pat" -- . 2>/dev/null || true)
else
  hits=$(grep -rlE --exclude-dir=build --exclude-dir=.git -e "$pat" . 2>/dev/null || true)
fi
if [ -n "$hits" ]; then
  echo "private keys are tracked (tests make their keys in temp dirs):"
  echo "$hits"
  exit 1
fi
echo "no private keys tracked"
