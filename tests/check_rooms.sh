#!/usr/bin/env bash
# Fails when an #include runs against the direction of the rooms
# (client/README.md, server/README.md, docs/architecture.md): the arrows go
# one way, from the command line down to the sandbox and the stores, and the
# two programs share only common/ and cachekey/. Also fails when a C file
# sits in client/ itself instead of in a room.
set -u
root=${1:-.}
cd "$root" || exit 1

# folder: the project folders its files may include, besides its own.
rules='
common
cachekey          common
server            common cachekey server/grpc server/reapi server/store server/s3 server/telemetry
server/telemetry  common
server/s3         common cachekey
server/store      common cachekey server/s3
server/reapi      common cachekey server/store server/telemetry
server/grpc       common cachekey server/reapi server/store server/telemetry
client/sandbox    common
client/store      common cachekey
client/remote     common cachekey client/store
client/registry   common cachekey client/store
client/engine     common cachekey client/store client/remote client/registry client/sandbox
client/cmd        common cachekey client/store client/remote client/registry client/sandbox client/engine
'
project='common|cachekey|client/[a-z0-9_]+|server/[a-z0-9_]+|server'
bad=0
while read -r folder allowed; do
  [ -n "$folder" ] || continue
  for f in $(find "$folder" -maxdepth 1 -name '*.[ch]' | sort); do
    while IFS= read -r inc; do
      target=$(printf '%s\n' "$inc" | grep -oE "^($project)/" | sed 's#/$##')
      [ -n "$target" ] || continue # system, protobuf or grpc header
      [ "$target" = "$folder" ] && continue
      ok=0
      for a in $allowed; do [ "$target" = "$a" ] && ok=1; done
      if [ "$ok" = 0 ]; then
        echo "$f includes $inc: $folder may not use $target"
        bad=1
      fi
    done < <(sed -nE 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*"([^"]+)".*/\1/p' "$f")
  done
done <<<"$rules"

loose=$(find client -maxdepth 1 -name '*.[ch]' | sort)
if [ -n "$loose" ]; then
  echo "C files in client/ outside a room (client/README.md):"
  echo "$loose"
  bad=1
fi
# A bare include ("store.h") hides which room a header is in.
bare=$(grep -rnE '^[[:space:]]*#[[:space:]]*include[[:space:]]*"[^/"]+"' client || true)
if [ -n "$bare" ]; then
  echo "includes without the room's path (write \"client/<room>/x.h\"):"
  echo "$bare"
  bad=1
fi
[ "$bad" = 0 ] && echo "every include follows the rooms' direction"
exit "$bad"
