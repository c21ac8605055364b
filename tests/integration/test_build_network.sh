#!/usr/bin/env bash
# The default RUN network: a private network namespace behind pasta that
# reaches the outside but not the host's loopback, abstract unix sockets,
# interfaces or raw packets; --network=host still reaches them all.
#
# Nothing here leaves the machine: cairn runs in a network namespace of
# our own ("host"), joined by a veth pair to a second one ("peer", at
# 10.201.0.2 and fd42:c41::2) that serves a file over HTTP and is the
# host's default gateway. The listeners the RUN must not reach are on the
# "host" namespace's 127.0.0.1, ::1 and an abstract unix socket.
. "$(dirname "$0")/lib.sh"

command -v ip >/dev/null || fail "iproute2 is not installed"
command -v pasta >/dev/null || fail "pasta is not installed (package passt)"

NS_HOST=cairn-net-$$-h
NS_PEER=cairn-net-$$-p
# Everything the test starts runs in one of its two namespaces (`ip netns
# exec` may fork, so $! is not always the server): what is left in them is
# killed by pid before they go.
cleanup() {
    local ns pids
    for ns in "$NS_HOST" "$NS_PEER"; do
        pids=$(ip netns pids "$ns" 2>/dev/null || true)
        [ -z "$pids" ] || kill $pids 2>/dev/null || true
    done
    sleep 0.2
    for ns in "$NS_HOST" "$NS_PEER"; do
        pids=$(ip netns pids "$ns" 2>/dev/null || true)
        [ -z "$pids" ] || kill -9 $pids 2>/dev/null || true
        ip netns del "$ns" 2>/dev/null || true
    done
    rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

in_host() { ip netns exec "$NS_HOST" "$@"; }
in_peer() { ip netns exec "$NS_PEER" "$@"; }

# The two namespaces and the link between them.
ip netns add "$NS_HOST"
ip netns add "$NS_PEER"
ip link add "cn$$h" type veth peer name "cn$$p"
ip link set "cn$$h" netns "$NS_HOST"
ip link set "cn$$p" netns "$NS_PEER"
in_host ip link set lo up
in_peer ip link set lo up
in_host ip addr add 10.201.0.1/24 dev "cn$$h"
in_peer ip addr add 10.201.0.2/24 dev "cn$$p"
in_host ip -6 addr add fd42:c41::1/64 dev "cn$$h" nodad
in_peer ip -6 addr add fd42:c41::2/64 dev "cn$$p" nodad
in_host ip link set "cn$$h" up
in_peer ip link set "cn$$p" up
in_host ip route add default via 10.201.0.2
in_host ip -6 route add default via fd42:c41::2
# An interface of the host's that is not on the default route: pasta
# copies that one's name and addresses, but no other.
in_host ip link add "cn$$x" type veth peer name "cn$$y"

# The probe (its network tools), static so it runs in the busybox image
# too.
probe="$CAIRN_BUILD_DIR/tests/probe/sandbox_probe"
[ -x "$probe" ] || fail "$probe is not built"
mkdir -p "$T/ctx" "$T/www"
cp "$probe" "$T/ctx/netprobe"
echo "hello from the peer" > "$T/www/hello.txt"

# listen NAME ARGS...: starts a listener in the host namespace.
listen() {
    local name=$1
    shift
    in_host "$T/ctx/netprobe" "$@" > "$T/$name.log" 2>&1 < /dev/null &
    for _ in $(seq 100); do
        grep -q listening "$T/$name.log" && return 0
        sleep 0.1
    done
    fail "listener $name: $(cat "$T/$name.log")"
}
PORT=$((20000 + $$ % 20000))
listen lo4 listen-tcp 127.0.0.1 "$PORT"
listen lo6 listen-tcp ::1 "$PORT"
listen abs listen-abstract "cairn-net-$$"
in_peer busybox httpd -f -p 10.201.0.2:8080 -h "$T/www" > /dev/null 2>&1 < /dev/null &
for _ in $(seq 100); do
    in_host busybox wget -q -O /dev/null http://10.201.0.2:8080/hello.txt && break
    sleep 0.1
done

bash "$CAIRN_SOURCE_DIR/tests/rootfs.sh" "$T/rootfs" >/dev/null
tar -C "$T/rootfs" -cf "$T/busybox.tar" .
"$CAIRN" import "$T/busybox.tar" busybox:latest >/dev/null || fail "import"

# The probe run by every RUN: what it can reach, which namespace and
# interfaces it has. The gateway on PORT is where pasta's default
# mapping would have led to the host's loopback.
cat > "$T/ctx/Dockerfile" <<EOF
FROM busybox:latest
COPY netprobe /netprobe
RUN echo "netns=\$(readlink /proc/self/ns/net)"; \\
    echo "ifaces=\$(tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ' | sort | tr '\\n' ' ')"; \\
    echo "lo4=\$(/netprobe connect-tcp 127.0.0.1 $PORT)"; \\
    echo "lo6=\$(/netprobe connect-tcp ::1 $PORT)"; \\
    echo "gw4=\$(/netprobe connect-tcp 10.201.0.2 $PORT)"; \\
    echo "gw6=\$(/netprobe connect-tcp fd42:c41::2 $PORT)"; \\
    echo "abs=\$(/netprobe connect-abstract cairn-net-$$)"; \\
    echo "\$(/netprobe packet)"; \\
    echo "peer=\$(timeout 20 wget -q -O - http://10.201.0.2:8080/hello.txt 2>&1)"; \\
    echo "resolv=\$(grep -c . /etc/resolv.conf)"
EOF

# field NAME FILE: the value of "NAME=..." in a build's output.
field() { sed -n "s/^$1=//p" "$2" | head -n 1; }

host_netns=$(in_host readlink /proc/self/ns/net)
host_ifaces=$(in_host tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ' | sort | tr '\n' ' ')

# 1. The default network: out through pasta, nothing of the host.
in_host "$CAIRN" build --progress plain --no-cache "$T/ctx" > "$T/def.out" 2>&1 ||
    { cat "$T/def.out"; fail "build on the default network"; }
o=$T/def.out
[ "$(field netns "$o")" != "$host_netns" ] || fail "default: the RUN is in the host's network namespace"
assert_eq "$(field ifaces "$o")" "cn$$h lo " "default: the RUN's interfaces (the host has $host_ifaces)"
for f in lo4 lo6 gw4 gw6 abs; do
    case "$(field "$f" "$o")" in
        refused:*) ;;
        *) fail "default: $f: the RUN reached the host: $(field "$f" "$o")" ;;
    esac
done
grep -q '^packet: open$' "$o" && fail "default: the RUN opened an AF_PACKET socket"
assert_eq "$(field peer "$o")" "hello from the peer" "default: fetch from the peer through pasta"

# 2. --network=host (the build flag, then RUN --network=host) reaches
#    them all: the opt-in still works.
check_host() {
    local o=$1 what=$2
    assert_eq "$(field netns "$o")" "$host_netns" "$what: network namespace"
    assert_eq "$(field lo4 "$o")" "reached: secret-tcp" "$what: 127.0.0.1"
    assert_eq "$(field lo6 "$o")" "reached: secret-tcp" "$what: ::1"
    assert_eq "$(field abs "$o")" "reached: secret-abstract" "$what: abstract socket"
    assert_eq "$(field peer "$o")" "hello from the peer" "$what: fetch from the peer"
}
in_host "$CAIRN" build --progress plain --no-cache --network host "$T/ctx" > "$T/host.out" 2>&1 ||
    { cat "$T/host.out"; fail "build --network host"; }
check_host "$T/host.out" "--network host"
sed -i 's/^RUN echo/RUN --network=host echo/' "$T/ctx/Dockerfile"
in_host "$CAIRN" build --progress plain --no-cache "$T/ctx" > "$T/runhost.out" 2>&1 ||
    { cat "$T/runhost.out"; fail "build with RUN --network=host"; }
check_host "$T/runhost.out" "RUN --network=host"
sed -i 's/^RUN --network=host echo/RUN echo/' "$T/ctx/Dockerfile"

# 3. --network default and none are accepted; anything else is refused.
in_host "$CAIRN" build --progress plain --no-cache --network none "$T/ctx" > "$T/none.out" 2>&1 ||
    { cat "$T/none.out"; fail "build --network none"; }
assert_eq "$(field ifaces "$T/none.out")" "lo " "--network none: interfaces"
assert_eq "$(field peer "$T/none.out" | grep -c 'hello')" "0" "--network none: fetch"
in_host "$CAIRN" build --progress plain --no-cache --network default "$T/ctx" > "$T/def2.out" 2>&1 ||
    { cat "$T/def2.out"; fail "build --network default"; }
assert_eq "$(field peer "$T/def2.out")" "hello from the peer" "--network default: fetch"
"$CAIRN" build --network bridge "$T/ctx" > "$T/bad.out" 2>&1 && fail "--network bridge accepted"
grep -q "must be default, host or none" "$T/bad.out" || fail "--network bridge: $(cat "$T/bad.out")"

# 4. A host whose resolv.conf names only a loopback resolver (as with
#    systemd-resolved): the RUN asks 169.254.1.1 and pasta relays to it.
#    A DNS server on the host namespace's 127.0.0.53 knows one name.
listen dns listen-dns 127.0.0.53 peer.cairn.test 10.201.0.2
printf 'nameserver 127.0.0.53\noptions edns0\n' > "$T/resolv.conf"
cat > "$T/ctx/Dockerfile" <<'EOF'
FROM busybox:latest
RUN echo "ns=$(grep nameserver /etc/resolv.conf | tr '\n' ' ')"; \
    echo "opts=$(grep options /etc/resolv.conf)"; \
    echo "peer=$(timeout 20 wget -q -O - http://peer.cairn.test:8080/hello.txt 2>&1)"
EOF
in_host unshare -m sh -c 'mount --bind "$1" /etc/resolv.conf && exec "$2" build --progress plain --no-cache "$3"' \
    sh "$T/resolv.conf" "$CAIRN" "$T/ctx" > "$T/dns.out" 2>&1 ||
    { cat "$T/dns.out"; fail "build with a loopback resolver"; }
assert_eq "$(field ns "$T/dns.out")" "nameserver 169.254.1.1 " "loopback resolver: RUN's nameservers"
assert_eq "$(field opts "$T/dns.out")" "options edns0" "loopback resolver: other lines kept"
assert_eq "$(field peer "$T/dns.out")" "hello from the peer" "loopback resolver: fetch by name"

# 5. Without pasta the default network fails, naming the package and the
#    alternatives, and never falls back to the host's network.
PATH=/nonexistent "$CAIRN" build --progress plain --no-cache "$T/ctx" > "$T/nopasta.out" 2>&1 &&
    fail "a RUN ran on the default network without pasta"
grep -q "pasta not found" "$T/nopasta.out" || fail "no pasta: $(cat "$T/nopasta.out")"
grep -q "passt" "$T/nopasta.out" || fail "no pasta: the package is not named"
grep -q -- "--network=host" "$T/nopasta.out" || fail "no pasta: alternatives not named"
grep -q "^peer=" "$T/nopasta.out" && fail "no pasta: the RUN ran anyway"

echo "PASS"
