#!/usr/bin/env bash
# cairn push to a registry with token auth over TLS (the test's CA through
# CAIRN_CERTS_D): without a login the push fails naming the registry and
# `cairn login`; alice (pull+push) pushes, asking for
# repository:NAME:pull,push (plus the mount source's pull for a mount);
# bob (pull only) is refused with a message naming the registry, and
# nothing is recorded in the store for him. Without the CA the push fails
# unless --insecure-registry names the registry.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/registry_lib.sh"
command -v busybox >/dev/null || fail "busybox-static is not installed"
export DOCKER_CONFIG=$T/dockercfg
mkdir -p "$DOCKER_CONFIG"
reg_start token --tls
export CAIRN_CERTS_D=$REG_DIR/certs.d

bash "$CAIRN_SOURCE_DIR/tests/rootfs.sh" "$T/rootfs" >/dev/null
tar -C "$T/rootfs" -cf "$T/busybox.tar" .
"$CAIRN" import "$T/busybox.tar" busybox:latest >/dev/null || fail "import"
img=$REG_ADDR/tok/app:1
"$CAIRN" tag busybox:latest "$img" || fail "tag"

# 1. No login: refused, naming the registry and cairn login.
"$CAIRN" push "$img" > "$T/p0" 2>&1 && fail "anonymous push succeeded"
grep -q "$REG_ADDR" "$T/p0" || fail "no registry in the message: $(cat "$T/p0")"
grep -q "cairn login" "$T/p0" || fail "no cairn login hint: $(cat "$T/p0")"

# 2. alice pushes.
echo alice-pw | "$CAIRN" login -u alice --password-stdin "$REG_ADDR" >/dev/null || fail "login alice"
"$CAIRN" push "$img" > "$T/p1" 2>&1 || { cat "$T/p1"; fail "alice's push"; }
digest=$(tail -1 "$T/p1" | cut -d' ' -f3)
assert_eq "sha256:$(skopeo inspect --cert-dir "$REG_CERTS_DIR" --creds alice:alice-pw --raw "docker://$img" |
    sha256sum | cut -d' ' -f1)" "$digest" "pushed manifest"
[ "$(reg_issuer_count '.user == "alice" and .status == 200 and (.scopes | index("repository:tok/app:pull,push") != null)')" -ge 1 ] ||
    fail "no pull,push token: $(cat "$REG_ISSUER_LOG")"
# A mount into another repository asks for the source's pull too.
"$CAIRN" push "$img" "$REG_ADDR/tok/copy:1" > "$T/p2" 2>&1 || { cat "$T/p2"; fail "alice's push to tok/copy"; }
grep -q "Mounted from tok/app" "$T/p2" || fail "no mount: $(cat "$T/p2")"
[ "$(reg_issuer_count '.user == "alice" and (.scopes | index("repository:tok/copy:pull,push") != null) and (.scopes | index("repository:tok/app:pull") != null)')" -ge 1 ] ||
    fail "no mount scopes: $(cat "$REG_ISSUER_LOG")"

# Without the CA the registry is not trusted; --insecure-registry skips the check.
CAIRN_CERTS_D=$T/none "$CAIRN" push "$img" > "$T/p4" 2>&1 && fail "pushed to an untrusted TLS registry"
grep -qi "certificate" "$T/p4" || fail "untrusted message: $(cat "$T/p4")"
CAIRN_CERTS_D=$T/none "$CAIRN" push --insecure-registry "$REG_ADDR" "$img" > "$T/p5" 2>&1 ||
    { cat "$T/p5"; fail "push --insecure-registry"; }
grep -q "Layer already exists" "$T/p5" || fail "insecure push: $(cat "$T/p5")"

# 3. bob may only pull: refused, the store unchanged.
"$CAIRN" logout "$REG_ADDR" >/dev/null
echo bob-pw | "$CAIRN" login -u bob --password-stdin "$REG_ADDR" >/dev/null || fail "login bob"
"$CAIRN" tag busybox:latest "$REG_ADDR/tok/bob:1" || fail "tag bob"
before=$("$CAIRN" inspect "$REG_ADDR/tok/bob:1" | jq -c '.[0].RepoDigests')
"$CAIRN" push "$REG_ADDR/tok/bob:1" > "$T/p3" 2>&1 && fail "bob pushed"
grep -q "$REG_ADDR" "$T/p3" || fail "bob: no registry in the message: $(cat "$T/p3")"
grep -qiE "denied|unauthorized|insufficient" "$T/p3" || fail "bob: message: $(cat "$T/p3")"
assert_eq "$("$CAIRN" inspect "$REG_ADDR/tok/bob:1" | jq -c '.[0].RepoDigests')" "$before" "bob's repo digests"
skopeo inspect --cert-dir "$REG_CERTS_DIR" --creds alice:alice-pw "docker://$REG_ADDR/tok/bob:1" > /dev/null 2>&1 &&
    fail "bob's manifest is in the registry"
echo ok
