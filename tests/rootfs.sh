#!/bin/sh
# Usage: tests/rootfs.sh DIR
#
# Makes a minimal root file system in DIR (created if missing) for tests that
# run commands in the sandbox: /bin/busybox (Debian's busybox-static, which
# must be installed at /bin/busybox) with a symlink per applet in /bin,
# /etc/passwd (root, and app uid 1000 gid 1000), /etc/group (root, app, and
# a group "extra" gid 2000 that lists app as a member) and /tmp (1777).
# There is deliberately no /proc, /dev, /etc/hosts or /etc/resolv.conf: the
# sandbox provides those mount points. Exit status 0 on success.
set -eu
if [ $# -ne 1 ] || [ -z "$1" ]; then
    echo "usage: $0 DIR" >&2
    exit 2
fi
root=$1
bb=/bin/busybox
if [ ! -x "$bb" ]; then
    echo "$0: $bb not found (install busybox-static)" >&2
    exit 1
fi
mkdir -p "$root/bin" "$root/etc" "$root/tmp"
chmod 1777 "$root/tmp"
cp "$bb" "$root/bin/busybox"
for applet in $("$bb" --list); do
    [ "$applet" = busybox ] && continue
    ln -sf busybox "$root/bin/$applet"
done
cat >"$root/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
app:x:1000:1000:app:/home/app:/bin/sh
EOF
cat >"$root/etc/group" <<'EOF'
root:x:0:
app:x:1000:
extra:x:2000:app
EOF
