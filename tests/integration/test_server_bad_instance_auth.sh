#!/usr/bin/env bash
# Ambiguous names and tokens (issue 9, item 15): an instance name with a NUL
# (protobuf-c would cut "main\0pr" to "main", so main's token passed for
# it), control characters, spaces or "." / ".." segments is INVALID_ARGUMENT
# before any token check; a call with two `authorization` headers is
# UNAUTHENTICATED, logged without the token values.
. "$(dirname "$0")/server_lib.sh"

cat >"$T/tokens" <<'TOK'
main-secret  write  main
pr-secret    write  pr/*
TOK
cd_start --tokens "$T/tokens"
echo data >"$T/f"
D=$(digest "$T/f")
H=${D%/*}
expect 0 probe --token main-secret put main "$T/f" && pass "main's token writes main"

# FindMissingBlobs {instance_name: "main\0pr", blob_digests: [D]}, by hand:
# field 1 (instance_name) len 7, field 2 (Digest) {1: hash, 2: size}.
printf '\x0a\x07main\x00pr\x12\x44\x0a\x40%s\x10%d' "$H" "${D#*/}" >"$T/fmb-nul"
expect_msg $INVALID_ARGUMENT 'NUL byte in instance_name' \
    probe --token main-secret raw /build.bazel.remote.execution.v2.ContentAddressableStorage/FindMissingBlobs "$T/fmb-nul"
# GetCapabilities {instance_name: "main\0x"}.
printf '\x0a\x06main\x00x' >"$T/caps-nul"
expect_msg $INVALID_ARGUMENT 'NUL byte in instance_name' \
    probe --token main-secret raw /build.bazel.remote.execution.v2.Capabilities/GetCapabilities "$T/caps-nul"
# ReadRequest {resource_name: "main\0pr/blobs/H/S"} (under 128 bytes: a
# one-byte length).
R="main_pr/blobs/$D"
printf '\x0a%b' "\\x$(printf %02x ${#R})main\\x00pr/blobs/$D" >"$T/read-nul"
expect_msg $INVALID_ARGUMENT 'NUL byte in resource_name' \
    probe --token main-secret raw /google.bytestream.ByteStream/Read "$T/read-nul"

# Control characters, spaces, "." and "..": refused before the token check
# (no token at all still gets INVALID_ARGUMENT, not UNAUTHENTICATED).
expect_msg $INVALID_ARGUMENT 'byte 0x01 at offset 4' probe --token main-secret fmb $'main\x01pr' "$D"
expect_msg $INVALID_ARGUMENT 'byte 0x01 at offset 4' probe fmb $'main\x01pr' "$D"
expect_msg $INVALID_ARGUMENT 'byte 0x0a at offset 4' probe --token main-secret caps $'main\npr'
expect_msg $INVALID_ARGUMENT 'byte 0x20 at offset 4' probe --token main-secret put 'main pr' "$T/f"
expect_msg $INVALID_ARGUMENT "'..' path segment" probe --token pr-secret put pr/../main "$T/f"
expect_msg $INVALID_ARGUMENT "'.' path segment" probe --token main-secret read "main/./blobs/$D"
expect_msg $INVALID_ARGUMENT 'byte 0x1b at offset 2' \
    probe --token main-secret write $'ma\x1b[0min/uploads/u/blobs/'"$D" "$T/f"
expect 0 probe --token main-secret read "main/blobs/$D" && pass "a clean name still reads"

# Two authorization headers: UNAUTHENTICATED on every method, even when
# both carry a good token, and the log names the count, not the tokens.
expect_msg $UNAUTHENTICATED '2 authorization headers' \
    probe --token pr-secret --token2 main-secret fmb main "$D"
expect_msg $UNAUTHENTICATED '2 authorization headers' \
    probe --token main-secret --token2 main-secret caps main
expect_msg $UNAUTHENTICATED '2 authorization headers' \
    probe --token main-secret --token2 main-secret read "main/blobs/$D"
expect_msg $UNAUTHENTICATED '2 authorization headers' \
    probe --token main-secret --token2 main-secret write "main/uploads/u2/blobs/$D" "$T/f"
expect_msg $UNAUTHENTICATED '2 authorization headers' \
    probe --token main-secret --token2 main-secret health
if grep -q "2 'authorization' headers: refused" "$CD_LOG"; then
    pass "duplicate authorization logged"
else
    fail "no log line for the duplicate authorization headers"
fi
if grep -q 'secret' "$CD_LOG"; then
    fail "a token value reached the log: $(grep secret "$CD_LOG" | head -1)"
else
    pass "no token value in the log"
fi
expect 0 probe --token main-secret fmb main "$D" && pass "one header still works"
alive instance_auth
cd_stop
finish
