#!/usr/bin/env bash
# cairn login / logout against docker-registry with htpasswd and token auth
# (registry_lib.sh): credentials are checked before they are stored, land
# in Docker's config.json in a form skopeo reads, or go to a credential
# helper; refused ones leave nothing behind.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/registry_lib.sh"

export HOME=$T/home
mkdir -p "$HOME"
unset DOCKER_CONFIG REGISTRY_AUTH_FILE XDG_RUNTIME_DIR
CONF=$HOME/.docker/config.json

auth_of() { # ADDR -> the "auth" field stored for it
    jq -r --arg k "$1" '.auths[$k].auth // empty' "$CONF" 2>/dev/null || true
}

# 1. htpasswd: a good login is stored (0600) and skopeo uses it.
reg_start htpasswd
reg_push_busybox login/busybox:1 alice:alice-pw || fail "push"
out=$(echo alice-pw | "$CAIRN" login -u alice --password-stdin "$REG_ADDR" 2>&1) \
    || fail "login alice: $out"
assert_eq "$out" "Login Succeeded" "login output"
assert_eq "$(auth_of "$REG_ADDR")" "$(printf alice:alice-pw | base64)" "stored auth"
assert_eq "$(stat -c %a "$CONF")" 600 "config.json mode"
skopeo inspect --tls-verify=false "docker://$REG_ADDR/login/busybox:1" >/dev/null \
    || fail "skopeo does not read the login cairn stored"
# The same login written as "https://ADDR" is found and replaced in place.
jq --arg k "$REG_ADDR" '.auths = {("https://" + $k): .auths[$k]} | .psFormat = "x"' \
    "$CONF" > "$T/c" && cp "$T/c" "$CONF"
echo alice-pw | "$CAIRN" login -u alice --password-stdin "http://$REG_ADDR/" >/dev/null \
    || fail "login with a scheme"
assert_eq "$(jq -r '.auths | keys | join(",")' "$CONF")" "https://$REG_ADDR" "key kept"
assert_eq "$(jq -r .psFormat "$CONF")" x "other settings kept"

# A wrong password: refused, nothing stored, the old login untouched.
cp "$CONF" "$T/before"
out=$(echo nope | "$CAIRN" login -u alice --password-stdin "$REG_ADDR" 2>&1) \
    && fail "login with a wrong password succeeded"
case $out in *unauthorized*"$REG_ADDR"*) ;; *) fail "wrong password: '$out'" ;; esac
case $out in *nope*) fail "the password is in the message: $out" ;; esac
cmp -s "$CONF" "$T/before" || fail "a refused login changed config.json"

# Logout: Docker's words, every key of that host gone, then "Not logged in".
out=$("$CAIRN" logout "$REG_ADDR")
assert_eq "$out" "Removing login credentials for $REG_ADDR" "logout output"
assert_eq "$(jq -r '.auths | length' "$CONF")" 0 "entries after logout"
assert_eq "$("$CAIRN" logout "$REG_ADDR")" "Not logged in to $REG_ADDR" "second logout"

# Usage errors.
out=$("$CAIRN" login -u alice "$REG_ADDR" 2>&1 </dev/null) && fail "non-TTY login"
case $out in *"non TTY"*) ;; *) fail "non-TTY message: '$out'" ;; esac
out=$(echo x | "$CAIRN" login --password-stdin "$REG_ADDR" 2>&1) && fail "no username"
case $out in *"--username"*) ;; *) fail "no-username message: '$out'" ;; esac
out=$("$CAIRN" login -u alice -p alice-pw "$REG_ADDR" 2>&1) || fail "login -p: $out"
case $out in *"WARNING! Using --password via the CLI is insecure"*) ;; *) fail "-p warning" ;; esac
"$CAIRN" logout "$REG_ADDR" >/dev/null

# On a terminal: prompts for both, the password is not echoed.
# Each answer waits for its prompt (at most 30 s, so a failing login
# cannot hang the test).
tty_wait() {
    local i
    for i in $(seq 1 300); do
        grep -q "$1" "$T/tty.out" && return 0
        sleep 0.1
    done
}
: > "$T/tty.out"
{
    tty_wait 'Username: '
    printf 'alice\n'
    tty_wait 'Password: '
    printf 'alice-pw\n'
    tty_wait 'Login Succeeded'
} | timeout 60 script -qfec "'$CAIRN' login '$REG_ADDR'" /dev/null > "$T/tty.out" 2>&1 \
    || fail "login on a terminal: $(cat -v "$T/tty.out")"
grep -q 'alice-pw' "$T/tty.out" && fail "the password was echoed: $(cat -v "$T/tty.out")"
assert_eq "$(auth_of "$REG_ADDR")" "$(printf alice:alice-pw | base64)" "terminal login stored"
"$CAIRN" logout "$REG_ADDR" >/dev/null

# A config.json that is not JSON: a clear error naming it, left as it was.
echo '{"auths": {' > "$CONF"
out=$(echo alice-pw | "$CAIRN" login -u alice --password-stdin "$REG_ADDR" 2>&1) \
    && fail "login over a malformed config.json"
case $out in *"$CONF"*malformed*) ;; *) fail "malformed config message: '$out'" ;; esac
assert_eq "$(cat "$CONF")" '{"auths": {' "malformed config.json untouched"
rm -f "$CONF"

# 2. Token auth (registry over TLS with the test's CA through CAIRN_CERTS_D):
# the password goes to the token service, which logs who asked.
reg_start token --tls
export CAIRN_CERTS_D=$REG_DIR/certs.d
out=$(echo nope | "$CAIRN" login -u alice --password-stdin "$REG_ADDR" 2>&1) \
    && fail "token: login with a wrong password succeeded"
case $out in *unauthorized*) ;; *) fail "token: wrong password: '$out'" ;; esac
[ -f "$CONF" ] && [ -n "$(auth_of "$REG_ADDR")" ] && fail "token: a refused login was stored"
echo bob-pw | "$CAIRN" login -u bob --password-stdin "$REG_ADDR" >/dev/null \
    || fail "token: login bob"
assert_eq "$(reg_issuer_count '.user == "bob" and .status == 200')" 1 "token: bob's token requests"
assert_eq "$(reg_issuer_count '.status == 401')" 1 "token: refused token requests"
# The token service gave a refresh token (offline_token=true): it is kept
# instead of the password, as docker login does, and skopeo uses it.
assert_eq "$(auth_of "$REG_ADDR")" "$(printf bob: | base64)" "token: stored auth"
idt=$(jq -r --arg k "$REG_ADDR" '.auths[$k].identitytoken // empty' "$CONF")
[ -n "$idt" ] || fail "token: no identity token stored"
grep -q bob-pw "$CONF" && fail "token: the password is in config.json"
reg_push_busybox tok/busybox:1 alice:alice-pw || fail "token: push"
n=$(reg_issuer_count '.grant_type == "refresh_token"')
skopeo inspect --cert-dir "$REG_CERTS_DIR" "docker://$REG_ADDR/tok/busybox:1" >/dev/null \
    || fail "token: skopeo does not use the identity token cairn stored"
[ "$(reg_issuer_count '.grant_type == "refresh_token" and .user == "bob"')" -gt "$n" ] \
    || fail "token: skopeo did not trade the refresh token"
# Without the CA the registry is not trusted: no login.
CAIRN_CERTS_D=$T/none "$CAIRN" login -u bob -p bob-pw "$REG_ADDR" >/dev/null 2>&1 \
    && fail "token: login to a TLS registry whose CA is unknown"
unset CAIRN_CERTS_D

# 3. A credential helper (credsStore): the secret goes to it, config.json
# keeps an empty entry.
mkdir -p "$T/bin" "$T/helper"
cat > "$T/bin/docker-credential-cairntest" <<'EOF'
#!/bin/sh
d="$CAIRN_TEST_HELPER_DIR"
echo "$1" >> "$d/calls"
case "$1" in
get) IFS= read -r s; f="$d/$(printf %s "$s" | tr '/:' '__')"
  if [ -f "$f" ]; then cat "$f"; else echo 'credentials not found in native keychain'; exit 1; fi;;
store) cat > "$d/in"; s=$(jq -r .ServerURL "$d/in"); cp "$d/in" "$d/$(printf %s "$s" | tr '/:' '__')";;
erase) IFS= read -r s; f="$d/$(printf %s "$s" | tr '/:' '__')"
  if [ -f "$f" ]; then rm "$f"; else echo 'credentials not found in native keychain'; exit 1; fi;;
esac
EOF
chmod +x "$T/bin/docker-credential-cairntest"
export PATH=$T/bin:$PATH CAIRN_TEST_HELPER_DIR=$T/helper
reg_start htpasswd
mkdir -p "$(dirname "$CONF")"
echo '{"credsStore": "cairntest"}' > "$CONF"
echo alice-pw | "$CAIRN" login -u alice --password-stdin "$REG_ADDR" >/dev/null \
    || fail "helper: login"
stored=$T/helper/$(printf %s "$REG_ADDR" | tr '/:' '__')
assert_eq "$(jq -r '.Username + ":" + .Secret' "$stored")" "alice:alice-pw" "helper: stored secret"
assert_eq "$(jq -c --arg k "$REG_ADDR" '.auths[$k]' "$CONF")" "{}" "helper: config.json entry"
grep -q alice-pw "$CONF" && fail "helper: the password is in config.json"
assert_eq "$("$CAIRN" logout "$REG_ADDR")" "Removing login credentials for $REG_ADDR" "helper: logout"
[ -f "$stored" ] && fail "helper: erase did not reach the helper"
grep -qx erase "$T/helper/calls" || fail "helper: no erase call"
echo "ok: cairn login/logout"
