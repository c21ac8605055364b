#!/usr/bin/env bash
# Bearer tokens: UNAUTHENTICATED without a valid token, PERMISSION_DENIED for
# writes with a read token or an instance outside the token's glob.
. "$(dirname "$0")/server_lib.sh"

cat >"$T/tokens" <<'TOK'
# token        role   instance-glob
ci-secret      write  *
laptop-secret  read   *
pr-secret      write  pr/*   # pull requests write only under pr/
TOK
cd_start --tokens "$T/tokens"
grep -q '3 grants loaded' "$CD_LOG" && pass "token file loaded"
echo data >"$T/f"
D=$(digest "$T/f")
ACT=$(echo act | sha256sum | cut -c1-64)/4

expect_msg $UNAUTHENTICATED 'missing or unknown bearer token' probe fmb main "$D"
expect_msg $UNAUTHENTICATED 'missing or unknown bearer token' probe --token nope put main "$T/f"
expect_msg $UNAUTHENTICATED 'missing or unknown bearer token' probe --token nope read "main/blobs/$D"
expect 0 probe health && pass "health needs no token"

expect 0 probe --token ci-secret put main "$T/f" && pass "write token writes"
expect 0 probe --token ci-secret ac-put main "$ACT" "file=f:$D"
expect 0 probe --token laptop-secret ac-get main "$ACT" && pass "read token reads"
expect 0 probe --token laptop-secret read "main/blobs/$D" && pass "read token streams"
expect_msg $PERMISSION_DENIED 'does not grant write access' probe --token laptop-secret put main "$T/f"
expect_msg $PERMISSION_DENIED 'does not grant write access' probe --token laptop-secret ac-put main "$ACT" "file=f:$D"
expect_msg $PERMISSION_DENIED 'does not grant write access' probe --token laptop-secret write "main/uploads/u/blobs/$D" "$T/f"
expect 0 probe --token laptop-secret caps main && grep -q 'update_enabled=0' "$T/last.out" \
    && pass "read token sees update_enabled=0"
expect 0 probe --token pr-secret put pr/42 "$T/f" && pass "pr token writes under pr/"
expect_msg $PERMISSION_DENIED "instance 'main'" probe --token pr-secret put main "$T/f"
expect_msg $PERMISSION_DENIED "does not grant read access to instance 'main'" probe --token pr-secret fmb main "$D"
cd_stop

# A malformed token file stops start-up with the line number.
echo "tok admin *" >"$T/bad"
rc=0; "$CAIRND" --listen 127.0.0.1:0 --dir "$T/x" --max-size 1M --tokens "$T/bad" 2>"$T/err" || rc=$?
[ "$rc" -eq 2 ] && grep -q "line 1: role 'admin'" "$T/err" && pass "bad token file refused" || fail "bad token file: rc=$rc $(cat "$T/err")"
finish
