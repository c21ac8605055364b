#!/usr/bin/env bash
# Bad input: a request that is not a valid protobuf message. The call fails with a specific status and message,
# nothing partial becomes visible, and the server stays up.
. "$(dirname "$0")/server_lib.sh"
cd_start
printf '\377\377\377\377\377garbage' >"$T/junk"
for m in ActionCache/GetActionResult ActionCache/UpdateActionResult ContentAddressableStorage/FindMissingBlobs \
         ContentAddressableStorage/BatchUpdateBlobs ContentAddressableStorage/BatchReadBlobs; do
    expect_msg $INVALID_ARGUMENT 'malformed' probe raw "/build.bazel.remote.execution.v2.$m" "$T/junk"
done
expect_msg $INVALID_ARGUMENT 'malformed ReadRequest' probe raw /google.bytestream.ByteStream/Read "$T/junk"
alive malformed
cd_stop
finish
