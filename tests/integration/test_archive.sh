# cairn import / history / inspect / save / load, checked against the real
# consumers of the archive format: skopeo (docker-archive: and
# oci-archive:), umoci (OCI layout), and cairn load into a fresh store.
# The rootfs is made here from busybox-static; nothing binary is committed.
source "$(dirname "$0")/lib.sh"

for tool in skopeo umoci busybox jq sha256sum; do
    command -v "$tool" >/dev/null || fail "$tool is needed (scripts/deps.sh)"
done

sha() { sha256sum "$1" | cut -d' ' -f1; }
# Docker's units.HumanSizeWithPrecision(n, 3).
human() {
    awk -v n="$1" 'BEGIN { split("B kB MB GB TB", u, " "); i = 1;
        while (n >= 1000 && i < 5) { n /= 1000; i++ } printf "%.3g%s\n", n, u[i] }'
}
blob_count() { find "$1/blobs/sha256" -type f 2>/dev/null | wc -l; }

# --- a rootfs tarball: /bin/busybox, applet symlinks, one small file ---
R="$T/rootfs"
mkdir -p "$R/bin" "$R/etc"
cp "$(command -v busybox)" "$R/bin/busybox"
for applet in sh ls cat echo; do ln -s busybox "$R/bin/$applet"; done
printf 'cairn-test\n' >"$R/etc/hostname"
tar -C "$R" --numeric-owner --owner=0 --group=0 --sort=name \
    --mtime=@1700000000 -cf "$T/rootfs.tar" .
gzip -9n <"$T/rootfs.tar" >"$T/rootfs.tar.gz"
content_bytes=$(( $(stat -c %s "$R/bin/busybox") + $(stat -c %s "$R/etc/hostname") ))

# --- import ---
id=$("$CAIRN" import --change 'CMD ["/bin/sh", "-c", "echo hi"]' \
    --change 'ENV FOO=bar GREETING="hello world"' --change 'EXPOSE 8080' \
    --change 'WORKDIR /srv' --change 'LABEL org.example.k=$FOO' \
    -m "imported by test" "$T/rootfs.tar" test/busybox:1)
[[ $id =~ ^sha256:[0-9a-f]{64}$ ]] || fail "import printed '$id'"
# The stored config is the image ID's preimage.
cfg_file="$CAIRN_ROOT/blobs/sha256/${id#sha256:}"
[ -f "$cfg_file" ] || fail "config blob $cfg_file missing"
assert_eq "sha256:$(sha "$cfg_file")" "$id" "config blob digest"

# A gzip input gives the same diff_id (the uncompressed tar) as plain.
id_gz=$("$CAIRN" import "$T/rootfs.tar.gz")
diff_plain=$(jq -r '.rootfs.diff_ids[0]' "$cfg_file")
diff_gz=$(jq -r '.rootfs.diff_ids[0]' "$CAIRN_ROOT/blobs/sha256/${id_gz#sha256:}")
assert_eq "$diff_plain" "sha256:$(sha "$T/rootfs.tar")" "diff_id of plain import"
assert_eq "$diff_gz" "$diff_plain" "diff_id of gzip import"
if command -v zstd >/dev/null; then
    zstd -q -c "$T/rootfs.tar" >"$T/rootfs.tar.zst"
    id_zst=$("$CAIRN" import - <"$T/rootfs.tar.zst")
    assert_eq "$(jq -r '.rootfs.diff_ids[0]' "$CAIRN_ROOT/blobs/sha256/${id_zst#sha256:}")" \
        "$diff_plain" "diff_id of zstd import from stdin"
    assert_eq "$(jq -r '.history[0].comment' "$CAIRN_ROOT/blobs/sha256/${id_zst#sha256:}")" \
        "Imported from -" "default import comment"
fi
# A plain tar is compressed with the build's block-parallel gzip, in one
# pass: the same blob with 1 and 2 workers, one that gzip -t accepts,
# holding the tar byte for byte.
imp_layer() { "$CAIRN" inspect "$1" | jq -r '.[0].Store.Layers[0].Digest'; }
CAIRN_LAYER_THREADS=1 "$CAIRN" import "$T/rootfs.tar" thr:1 >/dev/null || fail "import, 1 worker"
CAIRN_LAYER_THREADS=2 "$CAIRN" import "$T/rootfs.tar" thr:2 >/dev/null || fail "import, 2 workers"
assert_eq "$(imp_layer thr:2)" "$(imp_layer thr:1)" "imported layer digest with 2 workers against 1"
thr_blob="$CAIRN_ROOT/blobs/sha256/$(imp_layer thr:1 | cut -d: -f2)"
gzip -t "$thr_blob" || fail "gzip -t refuses the imported layer"
cmp -s <(gzip -dc "$thr_blob") "$T/rootfs.tar" || fail "imported layer is not the tar byte for byte"
"$CAIRN" rmi thr:1 thr:2 >/dev/null || fail "rmi thr"

# --- history ---
"$CAIRN" history test/busybox:1 >"$T/hist"
assert_eq "$(wc -l <"$T/hist")" 2 "history line count"
assert_eq "$(head -1 "$T/hist" | tr -s ' ')" "IMAGE CREATED CREATED BY SIZE COMMENT" \
    "history header"
row=$(sed -n 2p "$T/hist")
assert_eq "${row:0:12}" "${id:7:12}" "history IMAGE column"
[[ $row == *"$(human "$content_bytes")"* ]] ||
    fail "history SIZE: expected $(human "$content_bytes") in '$row'"
[[ $row == *"imported by test" ]] || fail "history COMMENT in '$row'"
[[ $row =~ (second|seconds|minute|minutes)\ ago ]] ||
    fail "history CREATED in '$row'"
assert_eq "$("$CAIRN" history -q test/busybox:1)" "${id:7:12}" "history -q"
[[ $("$CAIRN" history --no-trunc test/busybox:1 | sed -n 2p) == "$id "* ]] ||
    fail "history --no-trunc shows the full ID"
raw=$("$CAIRN" history --human=false test/busybox:1 | sed -n 2p)
[[ $raw == *" $content_bytes "* ]] || fail "history --human=false size in '$raw'"
if "$CAIRN" history no/such:image 2>"$T/err"; then fail "history of a missing image"; fi

# --- inspect ---
"$CAIRN" inspect test/busybox:1 >"$T/inspect.json"
j() { jq -r "$1" "$T/inspect.json"; }
assert_eq "$(j 'length')" 1 "inspect array length"
assert_eq "$(j '.[0].Id')" "$id" "inspect Id"
assert_eq "$(j '.[0].RepoTags | join(",")')" "test/busybox:1" "inspect RepoTags"
assert_eq "$(j '.[0].RepoDigests | length')" 0 "inspect RepoDigests"
assert_eq "$(j '.[0].Config.Cmd | join(" ")')" "/bin/sh -c echo hi" "inspect Cmd"
assert_eq "$(j '.[0].Config.Env | join(",")')" "FOO=bar,GREETING=hello world" "inspect Env"
assert_eq "$(j '.[0].Config.ExposedPorts | keys | join(",")')" "8080/tcp" "inspect ExposedPorts"
assert_eq "$(j '.[0].Config.WorkingDir')" "/srv" "inspect WorkingDir"
assert_eq "$(j '.[0].Config.Labels["org.example.k"]')" "bar" "inspect Labels (expanded)"
assert_eq "$(j '.[0].Os')" linux "inspect Os"
assert_eq "$(j '.[0].Size')" "$content_bytes" "inspect Size"
assert_eq "$(j '.[0].RootFS.Layers | join(",")')" "$diff_plain" "inspect RootFS"
assert_eq "$(j '.[0].History[0].comment')" "imported by test" "inspect History"
layer_digest=$(j '.[0].Store.Layers[0].Digest')
layer_path="$CAIRN_ROOT/$(j '.[0].Store.Layers[0].Path')"
assert_eq "sha256:$(sha "$layer_path")" "$layer_digest" "inspect Store layer path/digest"
assert_eq "$(j '.[0].Store.Layers[0].MediaType')" \
    application/vnd.oci.image.layer.v1.tar+gzip "inspect layer media type"
assert_eq "$(j '.[0].Store.Layers[0].Size')" "$(stat -c %s "$layer_path")" "inspect layer size"
assert_eq "$(gzip -dc "$layer_path" | sha256sum | cut -d' ' -f1)" "${diff_plain#sha256:}" \
    "stored layer decompresses to the imported tar"
manifest_digest=$(j '.[0].Store.Manifest.Digest')
if "$CAIRN" inspect test/busybox:1 no/such:image >"$T/inspect2.json" 2>"$T/err"; then
    fail "inspect with a missing image succeeded"
fi
assert_eq "$(jq length "$T/inspect2.json")" 1 "inspect prints the images it found"
grep -q 'no/such:image' "$T/err" || fail "inspect names the missing image: $(cat "$T/err")"

# --- --change errors ---
if "$CAIRN" import --change 'RUN true' "$T/rootfs.tar" 2>"$T/err"; then
    fail "import accepted RUN as a change"
fi
grep -q 'RUN cannot be changed' "$T/err" || fail "bad change message: $(cat "$T/err")"

# --- save; skopeo and umoci read it ---
"$CAIRN" save -o "$T/out.tar" test/busybox:1
tar -tf "$T/out.tar" >"$T/list"
for f in oci-layout index.json manifest.json "blobs/sha256/${id#sha256:}"; do
    grep -qx "$f" "$T/list" || fail "saved archive lacks $f"
done
assert_eq "$(tar -xOf "$T/out.tar" manifest.json | jq -r '.[0].RepoTags[0]')" \
    test/busybox:1 "manifest.json RepoTags"
"$CAIRN" save test/busybox:1 >"$T/out2.tar"
cmp -s "$T/out.tar" "$T/out2.tar" || fail "save is not deterministic (-o vs stdout)"

skopeo inspect --raw --config "docker-archive:$T/out.tar" >"$T/sk_cfg"
assert_eq "sha256:$(sha "$T/sk_cfg")" "$id" "skopeo docker-archive: config digest"
skopeo inspect "docker-archive:$T/out.tar" >"$T/sk.json"
assert_eq "$(jq -r '.Os' "$T/sk.json")" linux "skopeo docker-archive: Os"
skopeo inspect --raw "oci-archive:$T/out.tar" >"$T/sk_man"
assert_eq "sha256:$(sha "$T/sk_man")" "$manifest_digest" "skopeo oci-archive: manifest digest"
skopeo inspect --raw --config "oci-archive:$T/out.tar" >"$T/sk_cfg2"
assert_eq "sha256:$(sha "$T/sk_cfg2")" "$id" "skopeo oci-archive: config digest"
# skopeo can copy it on, both ways: this reads every layer.
skopeo copy -q "docker-archive:$T/out.tar" "oci:$T/sk_oci:copied" >/dev/null
skopeo copy -q "oci-archive:$T/out.tar" "dir:$T/sk_dir" >/dev/null
[ -f "$T/sk_dir/manifest.json" ] || fail "skopeo copy oci-archive: to dir: made nothing"

mkdir "$T/layout"
tar -C "$T/layout" -xf "$T/out.tar"
umoci unpack --image "$T/layout:1" "$T/bundle" >/dev/null
cmp "$T/bundle/rootfs/bin/busybox" "$R/bin/busybox" || fail "umoci: busybox differs"
cmp "$T/bundle/rootfs/etc/hostname" "$R/etc/hostname" || fail "umoci: hostname differs"
assert_eq "$(readlink "$T/bundle/rootfs/bin/sh")" busybox "umoci: symlink"
(cd "$R" && find . | sort) >"$T/want_files"
(cd "$T/bundle/rootfs" && find . | sort) >"$T/got_files"
diff "$T/want_files" "$T/got_files" >/dev/null || fail "umoci: file list differs"
assert_eq "$(jq -r '.process.args | join(" ")' "$T/bundle/config.json")" \
    "/bin/sh -c echo hi" "umoci: runtime config args"

# --- load into a fresh store reproduces the image ---
out=$(CAIRN_ROOT="$T/root2" "$CAIRN" load -i "$T/out.tar")
assert_eq "$out" "Loaded image: test/busybox:1" "load output"
CAIRN_ROOT="$T/root2" "$CAIRN" inspect test/busybox:1 >"$T/inspect3.json"
assert_eq "$(jq -r '.[0].Id' "$T/inspect3.json")" "$id" "image ID after load"
assert_eq "$(jq -r '.[0].Store.Manifest.Digest' "$T/inspect3.json")" "$manifest_digest" \
    "manifest digest after load"
# ... also from standard input, and from what skopeo writes as an
# oci-archive (no manifest.json) and a docker-archive (legacy layout).
out=$(CAIRN_ROOT="$T/root3" "$CAIRN" load <"$T/out.tar")
assert_eq "$out" "Loaded image: test/busybox:1" "load from stdin"
skopeo copy -q "oci-archive:$T/out.tar" "oci-archive:$T/sk.oci.tar:skopeo/img:2" >/dev/null
out=$(CAIRN_ROOT="$T/root4" "$CAIRN" load -i "$T/sk.oci.tar")
assert_eq "$out" "Loaded image: skopeo/img:2" "load of skopeo's oci-archive"
assert_eq "$(CAIRN_ROOT="$T/root4" "$CAIRN" inspect skopeo/img:2 | jq -r '.[0].Id')" \
    "$id" "image ID after loading skopeo's oci-archive"
skopeo copy -q "oci-archive:$T/out.tar" "docker-archive:$T/sk.docker.tar:skopeo/d:3" >/dev/null
out=$(CAIRN_ROOT="$T/root5" "$CAIRN" load -i "$T/sk.docker.tar")
assert_eq "$out" "Loaded image: skopeo/d:3" "load of skopeo's docker-archive"
assert_eq "$(CAIRN_ROOT="$T/root5" "$CAIRN" inspect skopeo/d:3 | jq -r '.[0].Id')" \
    "$id" "image ID after loading skopeo's docker-archive"

# --- a tampered archive is refused and stores nothing ---
mkdir "$T/bad"
tar -C "$T/bad" -xf "$T/out.tar"
printf 'x' >>"$T/bad/blobs/sha256/${id#sha256:}"
tar -C "$T/bad" -cf "$T/bad.tar" .
if CAIRN_ROOT="$T/root6" "$CAIRN" load -i "$T/bad.tar" 2>"$T/err"; then
    fail "load accepted a tampered config"
fi
grep -q 'digest' "$T/err" || fail "tampered load message: $(cat "$T/err")"
assert_eq "$(blob_count "$T/root6")" 0 "blobs stored by a failed load"

# --- a corrupt tarball is refused and leaves the store unchanged ---
# Repository, tag and ID only: CREATED moves with the clock.
images() { "$CAIRN" images --no-trunc | awk '{ print $1, $2, $3 }'; }
images >"$T/images_before"
grep -q '^test/busybox 1 sha256:' "$T/images_before" ||
    fail "cairn images lacks the imported image: $(cat "$T/images_before")"
before=$(blob_count "$CAIRN_ROOT")
head -c 100000 "$T/rootfs.tar.gz" >"$T/truncated.tar.gz"
if "$CAIRN" import "$T/truncated.tar.gz" trunc:1 2>"$T/err"; then
    fail "import accepted a truncated tarball"
fi
grep -qi 'corrupt\|truncated' "$T/err" || fail "truncated import message: $(cat "$T/err")"
head -c 5000 /dev/urandom >"$T/garbage"
if "$CAIRN" import "$T/garbage" garbage:1 2>"$T/err"; then
    fail "import accepted random bytes"
fi
grep -q 'not a tar archive\|corrupt' "$T/err" || fail "garbage import message: $(cat "$T/err")"
images >"$T/images_after"
diff "$T/images_before" "$T/images_after" || fail "cairn images changed after failed imports"
assert_eq "$(blob_count "$CAIRN_ROOT")" "$before" "blobs after failed imports"
if "$CAIRN" inspect trunc:1 >/dev/null 2>&1; then fail "failed import left a tag"; fi
echo "ok"
