#!/usr/bin/env bash
# The registry fixtures (registry_lib.sh, token_issuer.py) do what the
# registry tests rely on, checked with tools we did not write: skopeo and
# curl against Debian's docker-registry in each mode.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/registry_lib.sh"

command -v docker-registry >/dev/null || fail "docker-registry is not installed"
command -v skopeo >/dev/null || fail "skopeo is not installed"
export REGISTRY_AUTH_FILE=$T/auth.json
export HOME=$T/home
mkdir -p "$HOME"

layers_of() { # skopeo inspect args... -> number of layers
    skopeo inspect "$@" | jq '.Layers | length'
}
status_of() { # curl args... -> HTTP status
    curl -s -o /dev/null -w '%{http_code}' "$@"
}

# 1. Plain HTTP: push, inspect, the access log counts requests.
reg_start http
assert_eq "$(status_of "$REG_URL/v2/")" 200 "http: GET /v2/"
reg_push_busybox fixtures/busybox:1
assert_eq "$(layers_of --tls-verify=false "docker://$REG_ADDR/fixtures/busybox:1")" 1 \
    "http: layers of the pushed image"
before=$(reg_access_count '"HEAD /v2/fixtures/busybox/manifests/1 ')
status_of -I -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
    "$REG_URL/v2/fixtures/busybox/manifests/1" >/dev/null
sleep 0.2
assert_eq "$(reg_access_count '"HEAD /v2/fixtures/busybox/manifests/1 ')" $((before + 1)) \
    "http: one HEAD counted in the access log"
# The OCI layout is made once and reused.
oci=$(reg_oci_busybox)
[ -f "$oci/index.json" ] || fail "reg_oci_busybox: no layout"

# A two-platform OCI index, pushed unchanged.
reg_push_index fixtures/multi:1 || fail "push of the index"
raw=$(skopeo inspect --raw --tls-verify=false "docker://$REG_ADDR/fixtures/multi:1")
assert_eq "$(jq -r .mediaType <<<"$raw")" application/vnd.oci.image.index.v1+json "index media type"
assert_eq "$(jq -r '[.manifests[].platform | .architecture + (.variant // "")] | join(",")' <<<"$raw")" \
    "amd64,arm64v8" "index platforms"
assert_eq "$(skopeo inspect --tls-verify=false --override-arch arm64 --override-variant v8 \
    "docker://$REG_ADDR/fixtures/multi:1" | jq -r .Architecture)" arm64 "arm64 image of the index"
assert_eq "$(skopeo inspect --tls-verify=false --override-arch amd64 \
    "docker://$REG_ADDR/fixtures/multi:1" | jq -r '.Layers | length')" 1 "amd64 image of the index"

# 2. TLS: the CA the test made is needed and enough.
reg_start tls
[ -f "$REG_CA" ] || fail "tls: no REG_CA"
assert_eq "$(status_of --cacert "$REG_CA" "$REG_URL/v2/")" 200 "tls: GET /v2/ with the CA"
assert_eq "$(status_of "$REG_URL/v2/")" 000 "tls: GET /v2/ without the CA must fail"
reg_push_busybox tls/busybox:1
assert_eq "$(layers_of --cert-dir "$REG_CERTS_DIR" "docker://$REG_ADDR/tls/busybox:1")" 1 \
    "tls: inspect with --cert-dir"
skopeo inspect "docker://$REG_ADDR/tls/busybox:1" >/dev/null 2>&1 \
    && fail "tls: skopeo trusted the test CA without --cert-dir"

# 3. htpasswd: Basic challenge, bcrypt users, skopeo login.
reg_start htpasswd
h=$(curl -s -D - -o /dev/null "$REG_URL/v2/" | tr -d '\r' | grep -i '^www-authenticate:')
case $h in *'Basic realm="cairn-test-realm"'*) ;; *) fail "htpasswd: challenge '$h'" ;; esac
assert_eq "$(status_of -u alice:alice-pw "$REG_URL/v2/")" 200 "htpasswd: alice"
assert_eq "$(status_of -u alice:wrong "$REG_URL/v2/")" 401 "htpasswd: a wrong password"
skopeo login --tls-verify=false -u alice -p wrong "$REG_ADDR" >/dev/null 2>&1 \
    && fail "htpasswd: skopeo login with a wrong password"
skopeo login --tls-verify=false -u alice -p alice-pw "$REG_ADDR" >/dev/null \
    || fail "htpasswd: skopeo login"
reg_push_busybox auth/busybox:1 alice:alice-pw
assert_eq "$(layers_of --tls-verify=false "docker://$REG_ADDR/auth/busybox:1")" 1 \
    "htpasswd: inspect with the stored login"
skopeo logout "$REG_ADDR" >/dev/null
skopeo inspect --tls-verify=false "docker://$REG_ADDR/auth/busybox:1" >/dev/null 2>&1 \
    && fail "htpasswd: anonymous inspect"

# 4. Token auth: the challenge names the issuer; alice pushes, bob pulls
# only, nobody is anonymous.
reg_start token
h=$(curl -s -D - -o /dev/null "$REG_URL/v2/" | tr -d '\r' | grep -i '^www-authenticate:')
case $h in
*"Bearer realm=\"$REG_ISSUER_URL\",service=\"$REG_SERVICE\""*) ;;
*) fail "token: challenge '$h'" ;;
esac
tok=$(curl -s -u alice:alice-pw "$REG_ISSUER_URL?service=$REG_SERVICE&scope=repository:tok/busybox:pull,push" | jq -r .token)
[ -n "$tok" ] && [ "$tok" != null ] || fail "token: no token for alice"
assert_eq "$(status_of -H "Authorization: Bearer $tok" "$REG_URL/v2/")" 200 \
    "token: GET /v2/ with the token"
assert_eq "$(status_of -u alice:nope "$REG_ISSUER_URL?service=$REG_SERVICE")" 401 \
    "token: the issuer refuses a wrong password"
reg_push_busybox tok/busybox:1 alice:alice-pw
assert_eq "$(layers_of --tls-verify=false --creds bob:bob-pw "docker://$REG_ADDR/tok/busybox:1")" 1 \
    "token: bob pulls"
reg_push_busybox tok/bob:1 bob:bob-pw 2>/dev/null &&
    fail "token: bob pushed without push rights"
skopeo inspect --tls-verify=false "docker://$REG_ADDR/tok/busybox:1" >/dev/null 2>&1 \
    && fail "token: anonymous inspect without --anonymous-pull"
[ "$(reg_issuer_count '.status == 200 and .user == "alice"')" -ge 1 ] \
    || fail "token: the issuer log has no request of alice"
[ "$(reg_issuer_count '.status == 401')" -ge 1 ] || fail "token: the 401 is not logged"
grep -q 'alice-pw' "$REG_ISSUER_LOG" && fail "token: a password in the issuer log"
# The issuer can be told to fail.
n=$(reg_issuer_count)
reg_issuer_set mode 500
assert_eq "$(status_of "$REG_ISSUER_URL?service=$REG_SERVICE")" 500 "token: mode 500"
skopeo inspect --tls-verify=false --creds bob:bob-pw "docker://$REG_ADDR/tok/busybox:1" \
    >/dev/null 2>&1 && fail "token: inspect while the issuer fails"
reg_issuer_set mode garbage
assert_eq "$(curl -s "$REG_ISSUER_URL?service=$REG_SERVICE")" "<html>not json</html>" "token: mode garbage"
reg_issuer_set mode ''
[ "$(reg_issuer_count)" -gt "$n" ] || fail "token: failed requests are not logged"
# The OAuth2 refresh-token form Docker posts for identity tokens.
rt=$(curl -s -u alice:alice-pw "$REG_ISSUER_URL?service=$REG_SERVICE&offline_token=true" | jq -r .refresh_token)
[ -n "$rt" ] && [ "$rt" != null ] || fail "token: no refresh token for offline_token=true"
tok=$(curl -s --data-urlencode grant_type=refresh_token --data-urlencode "refresh_token=$rt" \
    --data-urlencode "service=$REG_SERVICE" --data-urlencode client_id=test \
    --data-urlencode "scope=repository:tok/busybox:pull" "$REG_ISSUER_URL" | jq -r .access_token)
assert_eq "$(status_of -H "Authorization: Bearer $tok" -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
    "$REG_URL/v2/tok/busybox/manifests/1")" 200 "token: a refreshed token pulls"

# 5. Token auth with anonymous pull, over TLS.
reg_start token --anonymous-pull --tls
case $REG_URL in https://*) ;; *) fail "token --tls: $REG_URL" ;; esac
reg_push_busybox anon/busybox:1 alice:alice-pw
assert_eq "$(layers_of --cert-dir "$REG_CERTS_DIR" "docker://$REG_ADDR/anon/busybox:1")" 1 \
    "token --anonymous-pull: anonymous inspect"
[ "$(reg_issuer_count '.user == null and .status == 200')" -ge 1 ] \
    || fail "token --anonymous-pull: no anonymous token logged"

# 6. The redirect middleware: blob GETs answer 307 to the static server,
# which serves the right bytes and logs each request. Started and filled
# through the pull tests' names (reg_start_plain, reg_oci_image, reg_push).
reg_start_plain redirect
echo extra > "$T/extra.txt"
REG_ARCH=arm64 reg_oci_image "$T/oci" app "$T/extra.txt"
reg_push "$T/oci:app" redir/app:1 || fail "reg_push"
assert_eq "$(skopeo inspect --tls-verify=false "docker://$REG_ADDR/redir/app:1" --override-arch arm64 \
    | jq -r .Architecture)" arm64 "reg_oci_image: REG_ARCH"
dg=$(skopeo inspect --raw --tls-verify=false "docker://$REG_ADDR/redir/app:1" | jq -r '.layers[0].digest')
assert_eq "$(status_of "$REG_URL/v2/redir/app/blobs/$dg")" 307 "redirect: blob GET"
got=$(curl -sL "$REG_URL/v2/redir/app/blobs/$dg" | sha256sum | cut -d' ' -f1)
assert_eq "sha256:$got" "$dg" "redirect: the redirected blob's digest"
grep -q "^GET /docker/registry/v2/blobs/sha256/../${dg#sha256:}/data auth=None$" "$REG_STATIC_LOG" \
    || fail "redirect: static log: $(cat "$REG_STATIC_LOG")"
curl -sL -o "$T/layer.tgz" "$REG_URL/v2/redir/app/blobs/$dg"
tar -tzf "$T/layer.tgz" > "$T/layer.list"
grep -qx 'extra.txt\|./extra.txt' "$T/layer.list" || fail "reg_oci_image: FILE not in the layer"
# A helper a test starts itself is stopped with the registries.
sleep 300 &
REG_PIDS+=($!)

# 7. reg_stop_all stops them all.
pids="$(cat "$T/reg-pids") ${REG_PIDS[*]}"
reg_stop_all
for p in $pids; do
    kill -0 "$p" 2>/dev/null && fail "process $p still runs after reg_stop_all"
done
echo "ok: registry fixtures"
