#!/usr/bin/env bash
# The Helm chart helm/cairnd, rendered with Helm 3's template semantics
# (tests/helm/render: Go text/template + sprig + Helm's functions, values
# checked by values.schema.json with gojsonschema as Helm does; the
# renderer's semantics are pinned first on tests/helm/selftest), for three
# values files in tests/helm/. Every rendered object must pass Kubernetes'
# schemas with no unknown field (tests/helm/validate.mjs, npm packages
# installed by scripts/deps.sh); key facts are asserted; bad values must be
# refused naming the field; and the rendered arguments, tokens file and
# certificates start a real cairnd (paths moved into the temp dir, on
# 127.0.0.1) that answers health, says NOT_SERVING after SIGTERM and fails
# it while draining a held call, accepts the write token and refuses the
# read one.
. "$(dirname "$0")/server_lib.sh"

SRC=${CAIRN_SOURCE_DIR:?}
CHART=$SRC/helm/cairnd
NODE_MODULES=${CAIRN_TEST_NODE_MODULES:-/opt/cairn-test/node_modules}
for tool in go node jq openssl; do
    command -v "$tool" >/dev/null || { echo "FAIL: $tool is missing: run scripts/deps.sh"; exit 1; }
done
[ -f "$NODE_MODULES/kubernetes-models/package.json" ] &&
    [ -f "$NODE_MODULES/@kubernetes-models/prometheus-operator/package.json" ] ||
    { echo "FAIL: no kubernetes-models in $NODE_MODULES: run scripts/deps.sh"; exit 1; }
[ -d /usr/share/gocode/src/github.com/Masterminds/sprig ] ||
    { echo "FAIL: Debian's sprig is missing: run scripts/deps.sh"; exit 1; }

# The renderer, built offline in GOPATH mode (tests/helm/render/main.go
# says why a GOPATH entry of its own beside /usr/share/gocode).
mkdir -p "$T/gopath/src/helmrender"
cp "$SRC/tests/helm/render/main.go" "$SRC/tests/helm/render/go.mod" "$T/gopath/src/helmrender/"
(cd "$T/gopath/src/helmrender" &&
    GOPATH="$T/gopath:/usr/share/gocode" GO111MODULE=off GOPROXY=off GOFLAGS= \
        GOCACHE="$T/gocache" go build -o "$T/render" .) ||
    { echo "FAIL: the renderer does not build"; exit 1; }

# --- the renderer's Helm semantics, one line each ---------------------------
ST=$SRC/tests/helm/selftest
if "$T/render" --chart "$ST" --name rel --namespace ns -f "$ST/over.yaml" \
    --set setInt=7,setZero=0,setZip=0755,setBool=true,dropMe=null \
    --out-yaml "$T/self.yaml" --out-json "$T/self.json" 2>"$T/self.err"; then
    while IFS= read -r want; do
        grep -qxF "  $want" "$T/self.yaml" && pass "renderer: $want" || fail "renderer: no line '$want'"
    done <<'WANT'
missing: "[]"
tpl: "rel-from-tpl"
fromYaml: "[\"a\",\"b\"]"
fromYamlError: "true"
float: "1.5e+11"
int64: "150000000000"
setInt: "7 int64"
setZero: "0 int64"
setLeadingZero: "0755 string"
setBool: "bool"
dropped: "false"
nested: "kept from-file added"
include: "HELLO REL"
kube: "1.29"
template: "selftest/templates/cm.yaml"
appVersion: "9.9"
required: "present"
WANT
    [ "$(jq -r 'map(.object.kind) | join(",")' "$T/self.json")" = Namespace,ConfigMap ] &&
        pass "renderer: documents split in Helm's install order; the comment-only one makes no object" ||
        fail "renderer: objects $(jq -c 'map(.object.kind)' "$T/self.json")"
    [ "$(grep -c '^---$' "$T/self.yaml")" = 3 ] && grep -qx '# only a comment: no object' "$T/self.yaml" &&
        pass "renderer: the comment-only document is printed, as helm template does" ||
        fail "renderer: documents in the output: $(grep -c '^---$' "$T/self.yaml")"
else
    fail "renderer: the self-test chart: $(cat "$T/self.err")"
fi
cp -r "$ST" "$T/selfenv"
printf '  env: {{ env "HOME" | quote }}\n' >>"$T/selfenv/templates/cm.yaml"
"$T/render" --chart "$T/selfenv" --out-yaml /dev/null 2>"$T/env.err" && fail "renderer: env is defined" ||
    { grep -q 'function "env" not defined' "$T/env.err" && pass "renderer: env removed from sprig, as in Helm"; } ||
    fail "renderer: env: $(cat "$T/env.err")"

# render NAME [render args...]: manifests in $T/NAME.yaml, objects in
# $T/NAME.json, NOTES in $T/NAME.notes; validates every object.
render() {
    local name=$1; shift
    if ! "$T/render" --chart "$CHART" --out-yaml "$T/$name.yaml" --out-json "$T/$name.json" \
        --out-notes "$T/$name.notes" "$@" 2>"$T/$name.err"; then
        fail "$name: render failed: $(cat "$T/$name.err")"
        return 1
    fi
    if node "$SRC/tests/helm/validate.mjs" "$NODE_MODULES" "$T/$name.json" >"$T/$name.valid"; then
        pass "$name: $(grep -c '^ok' "$T/$name.valid") objects valid, no unknown fields"
    else
        fail "$name: schema check"; grep -v '^ok' "$T/$name.valid"
    fi
}

# q NAME JQ: the jq expression over the rendered objects (.[].object).
q() { jq -r "[.[].object] | $2" "$T/$1.json"; }
# check NAME JQ EXPECTED WHAT
check() {
    local got
    got=$(q "$1" "$2")
    if [ "$got" = "$3" ]; then pass "$1: $4"; else fail "$1: $4: expected '$3', got '$got'"; fi
}
STS='(.[] | select(.kind=="StatefulSet"))'
POD="$STS.spec.template.spec"
C="$POD.containers[0]"
# The value following flag $3 in the container's args.
arg() { q "$1" "$C.args as \$a | [range(0; \$a|length) | select(\$a[.] == \"$2\") | \$a[.+1]] | join(\" \")"; }

# --- defaults --------------------------------------------------------------
render defaults -f "$SRC/tests/helm/values-defaults.yaml"
check defaults '[.[].kind] | join(",")' "PodDisruptionBudget,Service,Service,StatefulSet" \
    "objects in Helm's install order; no Secret, ServiceMonitor or NetworkPolicy by default"
check defaults "$STS.spec.replicas" 1 "one shard"
check defaults "$STS.spec.volumeClaimTemplates[0].spec.resources.requests.storage" 50Gi "PVC size"
check defaults "$STS.spec.volumeClaimTemplates[0].spec | has(\"storageClassName\")" false \
    "default storage class left to the cluster"
[ "$(arg defaults --max-size)" = 40960M ] && pass "defaults: --max-size 40960M = 50Gi less 20%" ||
    fail "defaults: --max-size $(arg defaults --max-size)"
check defaults "$C.image" "cairnd:$(sed -n 's/^appVersion: "\(.*\)"/\1/p' "$CHART/Chart.yaml")" \
    "image cairnd:<appVersion>"
check defaults "[$C.startupProbe, $C.readinessProbe, $C.livenessProbe] | map(.grpc.port) | join(\",\")" \
    "9092,9092,9092" "startup, readiness and liveness are native gRPC probes on the gRPC port"
check defaults "[$C.readinessProbe.grpc.service] | join(\",\")" "" \
    "probes ask for the server's overall health (service \"\")"
check defaults "$POD.securityContext | [.runAsNonRoot, .runAsUser > 0, .seccompProfile.type] | join(\",\")" \
    "true,true,RuntimeDefault" "pod runs as non-root with the RuntimeDefault seccomp profile"
check defaults "$C.securityContext | [.runAsNonRoot, .readOnlyRootFilesystem, .allowPrivilegeEscalation, (.capabilities.drop|join(\"+\")), .seccompProfile.type] | join(\",\")" \
    "true,true,false,ALL,RuntimeDefault" "container: read-only root, no escalation, all capabilities dropped"
check defaults "$POD.terminationGracePeriodSeconds" 50 "grace period = shutdown delay (5s) + drain (30s) + 15"
[ "$(arg defaults --drain-timeout)" = 30s ] && pass "defaults: --drain-timeout 30s" ||
    fail "defaults: --drain-timeout $(arg defaults --drain-timeout)"
[ "$(arg defaults --shutdown-delay)" = 5s ] && pass "defaults: --shutdown-delay 5s" ||
    fail "defaults: --shutdown-delay $(arg defaults --shutdown-delay)"
check defaults '(.[] | select(.kind=="Service" and .spec.clusterIP=="None")).metadata.name' \
    "$(q defaults "$STS.spec.serviceName")" "the StatefulSet's serviceName is the headless Service"
check defaults '[.[] | select(.kind=="Service") | .spec.clusterIP // "ClusterIP"] | join(",")' \
    "None,ClusterIP" "a headless and a ClusterIP Service"
check defaults '(.[] | select(.kind=="PodDisruptionBudget")).spec.maxUnavailable' 1 "PDB: one shard down at most"
grep -q '<no value>' "$T/defaults.yaml" && fail "defaults: '<no value>' left in the output"
[ "$(grep -o 'grpc://[^ "]*' "$T/defaults.notes" | sort -u)" = \
    "grpc://cairnd-0.cairnd-headless.default.svc.cluster.local:9092" ] &&
    pass "defaults: NOTES gives the one shard's URL" || { fail "defaults: NOTES"; cat "$T/defaults.notes"; }

# --- TLS + tokens + 3 shards + ServiceMonitor -------------------------------
cd "$T"
ossl() { openssl "$@" 2>>"$T/openssl.log" >/dev/null || { echo "openssl failed"; cat "$T/openssl.log"; exit 1; }; }
ossl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=test-ca -keyout ca.key -out ca.pem
printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >san.ext
ossl req -newkey rsa:2048 -nodes -subj /CN=localhost -keyout server.key -out server.csr
ossl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -extfile san.ext -out server.pem
ossl req -newkey rsa:2048 -nodes -subj /CN=client -keyout client.key -out client.csr
ossl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -out client.pem
cd - >/dev/null
{
    echo "tls:"
    for k in cert:server.pem key:server.key ca:ca.pem; do
        echo "  ${k%%:*}: |"; sed 's/^/    /' "$T/${k#*:}"
    done
} >"$T/certs.yaml"
render shards --name cache --namespace build -f "$SRC/tests/helm/values-tls-tokens-shards.yaml" -f "$T/certs.yaml"
check shards "$STS.spec.replicas" 3 "three shards"
[ "$(arg shards --max-size)" = 81920M ] && pass "shards: --max-size 81920M = 100Gi less 20%" ||
    fail "shards: --max-size $(arg shards --max-size)"
[ "$(arg shards --tls-client-ca)" = /etc/cairnd/tls/ca.crt ] && pass "shards: mutual TLS from ca.crt" ||
    fail "shards: --tls-client-ca '$(arg shards --tls-client-ca)'"
check shards "[$C.startupProbe, $C.readinessProbe, $C.livenessProbe] | map(.grpc.port) | join(\",\")" \
    "9093,9093,9093" "with TLS the probes are gRPC on the plaintext health port (the kubelet's speaks no TLS)"
[ "$(arg shards --health-listen)" = "*:9093" ] && pass "shards: cairnd opens the health port" ||
    fail "shards: --health-listen '$(arg shards --health-listen)'"
check shards "$POD.terminationGracePeriodSeconds > 60" true "grace period above the 60s drain"
check shards '(.[] | select(.kind=="Secret" and .type=="kubernetes.io/tls")).stringData | keys | join(",")' \
    "ca.crt,tls.crt,tls.key" "TLS Secret with cert-manager's keys"
check shards "(.[] | select(.kind==\"Secret\" and .type==\"kubernetes.io/tls\")).stringData[\"tls.crt\"] == $(jq -Rs . "$T/server.pem")" \
    true "the certificate reaches the Secret byte for byte"
check shards '(.[] | select(.kind=="ServiceMonitor")).spec.endpoints[0].port' metrics "ServiceMonitor scrapes the metrics port"
check shards '(.[] | select(.kind=="ServiceMonitor")).spec.selector.matchLabels as $s | [.[] | select(.kind=="Service") | select(.metadata.labels | contains($s)) | .spec.ports[].name] | join(",")' \
    "grpc,metrics" "ServiceMonitor selects exactly the headless Service, which has the metrics port"
check shards '(.[] | select(.kind=="ServiceMonitor")).metadata.labels.release' prometheus "ServiceMonitor labels"
[ "$(arg shards --metrics-listen)" = "*:9464" ] && pass "shards: --metrics-listen *:9464" ||
    fail "shards: --metrics-listen '$(arg shards --metrics-listen)'"
[ "$(arg shards --metrics-token-file)" = /etc/cairnd/metrics/token ] && pass "shards: --metrics-token-file" ||
    fail "shards: --metrics-token-file '$(arg shards --metrics-token-file)'"
check shards "($POD.volumes[] | select(.name==\"metrics-token\")).secret | \"\(.secretName):\(.items[0].key)>\(.items[0].path)\"" \
    "cache-metrics-token:token>token" "the metrics token comes from the named Secret"
check shards '(.[] | select(.kind=="ServiceMonitor")).spec.endpoints[0].authorization | "\(.type) \(.credentials.name):\(.credentials.key)"' \
    "Bearer cache-metrics-token:token" "the ServiceMonitor sends the metrics token"
[ -z "$(arg defaults --metrics-token-file)" ] && pass "defaults: no metrics token" ||
    fail "defaults: --metrics-token-file '$(arg defaults --metrics-token-file)'"
check shards '(.[] | select(.kind=="NetworkPolicy")).spec | [.policyTypes[], (.ingress | map(.ports[0].port) | join("+")), (.egress|length)] | join(",")' \
    "Ingress,Egress,grpc+metrics,0" "NetworkPolicy: gRPC and metrics in, nothing out"
urls=$(grep -o 'grpcs://[^ "]*' "$T/shards.notes" | sort -u | tr '\n' ' ')
want="grpcs://cache-cairnd-0.cache-cairnd-headless.build.svc.cluster.local:9092 grpcs://cache-cairnd-1.cache-cairnd-headless.build.svc.cluster.local:9092 grpcs://cache-cairnd-2.cache-cairnd-headless.build.svc.cluster.local:9092 "
[ "$urls" = "$want" ] && pass "shards: NOTES lists the 3 shards' grpcs:// URLs" ||
    { fail "shards: NOTES URLs '$urls'"; cat "$T/shards.notes"; }
grep -q "^  export CAIRN_CACHE=\"${want% }\"$" "$T/shards.notes" && pass "shards: NOTES gives CAIRN_CACHE" ||
    fail "shards: no CAIRN_CACHE line with all shards"

# --- existing Secrets, custom storage ---------------------------------------
render existing -f "$SRC/tests/helm/values-existing-secret.yaml"
check existing '[.[] | select(.kind=="Secret")] | length' 0 "no Secret made when existing ones are named"
check existing "$POD.volumes | map(\"\(.name)=\(.secret.secretName)\") | join(\",\")" \
    "tokens=build-cache-tokens,tls=build-cache-cert" "volumes from the existing Secrets"
check existing "($POD.volumes[] | select(.name==\"tokens\")).secret.items[0] | \"\(.key)>\(.path)\"" \
    "tokens.txt>tokens" "the tokens Secret's key is mounted where --tokens reads"
check existing "$STS.spec.volumeClaimTemplates[0].spec | \"\(.storageClassName) \(.resources.requests.storage)\"" \
    "fast-ssd 750Gi" "custom storage class and size"
[ "$(arg existing --max-size)" = 691200M ] && pass "existing: --max-size 691200M = 750Gi less 10%" ||
    fail "existing: --max-size $(arg existing --max-size)"
check existing "$POD.terminationGracePeriodSeconds" 120 "explicit grace period"
check existing "$STS.metadata.name" build-cache "fullnameOverride"

# --- sizes: explicit, and large enough that float64 would print 8.388608e+08
render maxsize -f "$SRC/tests/helm/values-defaults.yaml" --set storage.maxSize=100G
[ "$(arg maxsize --max-size)" = 100G ] && pass "maxsize: storage.maxSize wins" || fail "maxsize: $(arg maxsize --max-size)"
render huge --set storage.size=1000Ti
[ "$(arg huge --max-size)" = 838860800M ] && pass "huge: --max-size 838860800M, integer arithmetic" ||
    fail "huge: --max-size $(arg huge --max-size)"

# --- bad values are refused, naming the field --------------------------------
# refuse WHAT PATTERN [render args...]
refuse() {
    local what=$1 pat=$2; shift 2
    if "$T/render" --chart "$CHART" --out-yaml /dev/null "$@" 2>"$T/refuse.err"; then
        fail "accepted $what"
    elif grep -q -- "$pat" "$T/refuse.err"; then
        pass "refused $what: $(grep -- "$pat" "$T/refuse.err" | head -1 | cut -c1-150)"
    else
        fail "$what: message does not match '$pat': $(head -3 "$T/refuse.err")"
    fi
}
printf 'replicas: "two"\n' >"$T/two.yaml"
refuse 'replicas: "two"' '^- replicas: Invalid type. Expected: integer, given: string' -f "$T/two.yaml"
refuse 'replicas=0' '^- replicas: Must be greater than or equal to 1' --set replicas=0
refuse 'storage.size=50GB' '^- storage.size: Does not match pattern' --set storage.size=50GB
refuse 'port=70000' '^- port: Must be less than or equal to 65535' --set port=70000
refuse 'cairnd.logLevel=verbose' '^- cairnd.logLevel: cairnd.logLevel must be one of' --set cairnd.logLevel=verbose
refuse 'a misspelt key (tls.enabeld)' '^- tls: Additional property enabeld is not allowed' --set tls.enabeld=true
refuse 'a writable root filesystem' '^- securityContext.readOnlyRootFilesystem' \
    --set securityContext.readOnlyRootFilesystem=false
printf 'tokens:\n  enabled: true\n  grants:\n    - token: short\n      role: admin\n      instance: "*"\n' >"$T/grant.yaml"
refuse 'a bad grant' '^- tokens.grants.0.role: tokens.grants.0.role must be one of' -f "$T/grant.yaml"
refuse 'a grace period below the delay and the drain' \
    'terminationGracePeriodSeconds (35) must be above cairnd.shutdownDelaySeconds + cairnd.drainTimeoutSeconds (35)' \
    --set terminationGracePeriodSeconds=35
refuse 'tokens without grants or a Secret' 'tokens.enabled: give tokens.grants' --set tokens.enabled=true
refuse 'TLS without a certificate' 'tls.enabled: give tls.cert' --set tls.enabled=true
refuse 'a volume too small for headroom' 'storage.size 64Mi leaves 51M' --set storage.size=64Mi
refuse 'Kubernetes 1.23 (no gRPC probes by default)' 'chart requires kubeVersion: >=1.24.0-0' \
    --kube-version v1.23.0
refuse 'a ServiceMonitor without metrics' 'metrics.serviceMonitor.enabled needs metrics.enabled' \
    --set metrics.serviceMonitor.enabled=true

# --- an S3 backend: nodes on one bucket ------------------------------------
render s3 --name cache --namespace build -f "$SRC/tests/helm/values-s3.yaml"
DEP='(.[] | select(.kind=="Deployment"))'
SC="$DEP.spec.template.spec.containers[0]"
s3arg() { q s3 "$SC.args as \$a | [range(0; \$a|length) | select(\$a[.] == \"$1\") | \$a[.+1]] | join(\" \")"; }
check s3 '[.[].kind] | join(",")' "NetworkPolicy,PodDisruptionBudget,Service,Service,Deployment" \
    "a Deployment instead of the StatefulSet"
check s3 "$DEP.spec.replicas" 3 "three nodes"
[ "$(s3arg --backend) $(s3arg --s3-endpoint) $(s3arg --s3-region)" = \
    "s3://build-cache/cairn http://minio.storage:9000 eu-west-1" ] &&
    q s3 "$SC.args | index(\"--s3-path-style\") != null" | grep -qx true &&
    pass "s3: --backend, --s3-endpoint, --s3-region, --s3-path-style" || fail "s3: args $(q s3 "$SC.args | join(\" \")")"
check s3 "$SC.env | map(\"\(.name)=\(.valueFrom.secretKeyRef.name):\(.valueFrom.secretKeyRef.key):\(.valueFrom.secretKeyRef.optional // false)\") | join(\",\")" \
    "AWS_ACCESS_KEY_ID=cache-s3-keys:AWS_ACCESS_KEY_ID:false,AWS_SECRET_ACCESS_KEY=cache-s3-keys:AWS_SECRET_ACCESS_KEY:false,AWS_SESSION_TOKEN=cache-s3-keys:AWS_SESSION_TOKEN:true" \
    "credentials from the Secret as AWS_* variables, the session token optional"
check s3 "($DEP.spec.template.spec.volumes[] | select(.name==\"data\")).emptyDir.sizeLimit" 20Gi \
    "the local cache is an emptyDir of storage.size"
[ "$(s3arg --max-size)" = 16384M ] && pass "s3: --max-size 16384M = 20Gi less 20%" || fail "s3: --max-size $(s3arg --max-size)"
check s3 "$DEP.spec | has(\"volumeClaimTemplates\") or has(\"serviceName\")" false "no claims, no serviceName"
check s3 '(.[] | select(.kind=="NetworkPolicy")).spec.egress | map(if .to then "bucket" else (.ports | map(.port) | join("+")) end) | join(",")' \
    "bucket,53+53" "NetworkPolicy: egress to the bucket's peers and DNS only"
grep -qx '  export CAIRN_CACHE="grpc://cache-cairnd.build.svc.cluster.local:9092"' "$T/s3.notes" &&
    ! grep -q 'cairnd-0\.' "$T/s3.notes" && pass "s3: NOTES gives the one Service URL" ||
    { fail "s3: NOTES"; cat "$T/s3.notes"; }
check defaults '[.[] | select(.kind=="Deployment")] | length' 0 "defaults: no Deployment"
refuse 'backend.s3.url without an endpoint' 'backend.s3.url needs backend.s3.endpoint' \
    --set backend.s3.url=s3://bucket-a
refuse 'backend.s3.url not s3://' '^- backend.s3.url: Does not match pattern' \
    --set backend.s3.url=https://bucket-a,backend.s3.endpoint=http://x

# --- the validator itself catches what validate() alone lets through --------
jq '(.[] | select(.object.kind=="StatefulSet") | .object.spec.template.spec.containers[0].imagePullPolice) = "Always"' \
    "$T/defaults.json" >"$T/typo.json"
node "$SRC/tests/helm/validate.mjs" "$NODE_MODULES" "$T/typo.json" >"$T/typo.out" &&
    fail "validator accepted an unknown field" ||
    { grep -q 'unknown field(s) /spec/template/spec/containers/0/imagePullPolice' "$T/typo.out" &&
        pass "validator names an unknown field"; } || fail "validator: $(grep FAIL "$T/typo.out")"
jq '(.[] | select(.object.kind=="PodDisruptionBudget") | .object.spec.maxUnavailable) = true' \
    "$T/defaults.json" >"$T/type.json"
node "$SRC/tests/helm/validate.mjs" "$NODE_MODULES" "$T/type.json" >"$T/type.out" &&
    fail "validator accepted a wrong type" || pass "validator refuses a wrong type"

# --- the rendered arguments and Secrets start a real cairnd ------------------
# start_rendered NAME [ARGS...]: cairnd with the StatefulSet's args (then
# ARGS, which cairnd takes over earlier ones), its paths moved
# under $T/NAME/root, the listen address 127.0.0.1:0, and each secret
# volume's items written where the pod would see them (from the chart's
# Secret, or from $T/NAME/secrets/<secret>/<key> for an existing one).
start_rendered() {
    local name=$1 root=$T/$1/root vol mnt secret key path
    while read -r mnt; do mkdir -p "$root$mnt"; done < <(q "$name" "$C.volumeMounts[].mountPath")
    while read -r vol mnt; do
        secret=$(q "$name" "($POD.volumes[] | select(.name==\"$vol\")).secret.secretName")
        while read -r key path; do
            if [ "$(q "$name" "[.[] | select(.kind==\"Secret\" and .metadata.name==\"$secret\")] | length")" = 1 ]; then
                q "$name" "(.[] | select(.kind==\"Secret\" and .metadata.name==\"$secret\")).stringData[\"$key\"]" \
                    >"$root$mnt/$path"
            else
                cp "$T/$name/secrets/$secret/$key" "$root$mnt/$path"
            fi
        done < <(q "$name" "($POD.volumes[] | select(.name==\"$vol\")).secret.items[] | \"\(.key) \(.path)\"")
    done < <(q "$name" "$C.volumeMounts[] | select(.name != \"data\") | \"\(.name) \(.mountPath)\"")
    local args=() a skip=0
    while IFS= read -r a; do
        if [ "$skip" = 1 ]; then skip=0; continue; fi
        # Metrics are issue 13 item 2: dropped until cairnd knows the flag.
        if [ "$a" = --metrics-listen ] && ! "$CAIRND" --help | grep -q -- --metrics-listen; then
            skip=1; continue
        fi
        case $a in
            /*) args+=("$root$a") ;;
            \*:*) args+=(127.0.0.1:0) ;;
            *) args+=("$a") ;;
        esac
    done < <(q "$name" "$C.args[]")
    cd_start "${args[@]}" "${@:2}"
}

echo data >"$T/blob"
# The rendered --shutdown-delay 5s, lengthened so that no check below
# races its end (the second SIGTERM ends it).
start_rendered defaults --shutdown-delay 1h
grep -q 'max 42949672960 bytes' "$CD_LOG" && pass "defaults: cairnd takes --max-size 40960M (40 GiB)" ||
    fail "defaults: cairnd's start line: $(grep 'store' "$CD_LOG" | head -1)"
expect 0 probe health && pass "defaults: the rendered cairnd answers health"
# Readiness on SIGTERM, with a Write held open: for the chart's
# --shutdown-delay health answers NOT_SERVING (the readiness probe fails)
# while cairnd still serves; a second SIGTERM ends the delay without
# waiting for it, and the drain (--drain-timeout 30s) refuses new
# connections, so the health check fails at the connection while cairnd
# still runs.
head -c 3000000 /dev/urandom >"$T/big"
R="uploads/drain/blobs/$(digest "$T/big")"
# The probe binary itself, so that $! is the client to kill.
"$PROBE" --addr "127.0.0.1:$CD_PORT" --timeout 60 write "$R" "$T/big" count=1000000 finish=0 hold=60 \
    >"$T/held.out" 2>&1 &
held=$!
for _ in $(seq 1 100); do
    probe qws "$R" 2>/dev/null | grep -q 'committed_size=1000000' && break
    sleep 0.1
done
kill -TERM "$CD_PID"
for _ in $(seq 1 100); do grep -q 'SIGTERM: health NOT_SERVING' "$CD_LOG" && break; sleep 0.1; done
expect 0 probe --timeout 5 health && grep -qx status=2 "$T/last.out" &&
    pass "defaults: health NOT_SERVING during the shutdown delay (readiness drops)" ||
    fail "defaults: health after SIGTERM: $(cat "$T/last.out")"
kill -TERM "$CD_PID"
for _ in $(seq 1 100); do grep -q 'SIGTERM: draining' "$CD_LOG" && break; sleep 0.1; done
expect "$UNAVAILABLE" probe --timeout 5 health && kill -0 "$CD_PID" &&
    pass "defaults: health fails while cairnd drains a call in flight (readiness drops)"
kill "$held" 2>/dev/null; wait "$held" 2>/dev/null
cd_stop

mkdir -p "$T/shards/secrets/cache-metrics-token"
printf 'metrics-token-0123456789\n' >"$T/shards/secrets/cache-metrics-token/token"
start_rendered shards --shutdown-delay 1h
MP=$(sed -n 's/^metrics on 127\.0\.0\.1:\([0-9][0-9]*\)$/\1/p' "$T/cairnd$CD_N.out")
[ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$MP/metrics")" = 401 ] &&
    [ "$(curl -s -o /dev/null -w '%{http_code}' -H 'Authorization: Bearer metrics-token-0123456789' \
        "http://127.0.0.1:$MP/metrics")" = 200 ] &&
    pass "shards: /metrics requires the Secret's token" || fail "shards: /metrics token (port '$MP')"
TLSARGS=(--ca "$T/ca.pem" --cert "$T/client.pem" --key "$T/client.key" --timeout 10)
expect 0 probe "${TLSARGS[@]}" health && pass "shards: health over mutual TLS"
expect 0 probe "${TLSARGS[@]}" --token ci-writer-0123456789abcdef put main/x "$T/blob" &&
    pass "shards: the chart's write token writes main/x"
expect "$PERMISSION_DENIED" probe "${TLSARGS[@]}" --token dev-reader-0123456789abcdef put main/x "$T/blob" &&
    pass "shards: the chart's read token may not write"
# The probes' port: plaintext, no token, health only, NOT_SERVING on SIGTERM.
HP=$(sed -n 's/^health on 127\.0\.0\.1:\([0-9][0-9]*\)$/\1/p' "$T/cairnd$CD_N.out")
hprobe() { "$PROBE" --addr "127.0.0.1:${HP:-1}" --timeout 10 "$@"; }
expect 0 hprobe health && grep -qx status=1 "$T/last.out" &&
    pass "shards: the probes' Check on the health port is SERVING over plaintext" ||
    fail "shards: health port (port '$HP'): $(cat "$T/last.out")"
expect "$UNIMPLEMENTED" hprobe fmb main/x "$(digest "$T/blob")" &&
    pass "shards: the health port serves nothing but health"
kill -TERM "$CD_PID"
for _ in $(seq 1 100); do grep -q 'SIGTERM: health NOT_SERVING' "$CD_LOG" && break; sleep 0.1; done
expect 0 hprobe health && grep -qx status=2 "$T/last.out" &&
    pass "shards: health port NOT_SERVING during the shutdown delay (readiness drops)" ||
    fail "shards: health port after SIGTERM: $(cat "$T/last.out")"
cd_stop

mkdir -p "$T/existing/secrets/build-cache-tokens" "$T/existing/secrets/build-cache-cert"
printf 'existing-token-0123456789 write *\n' >"$T/existing/secrets/build-cache-tokens/tokens.txt"
cp "$T/server.pem" "$T/existing/secrets/build-cache-cert/tls.crt"
cp "$T/server.key" "$T/existing/secrets/build-cache-cert/tls.key"
start_rendered existing
expect 0 probe --ca "$T/ca.pem" --timeout 10 --token existing-token-0123456789 put "" "$T/blob" &&
    pass "existing: cairnd uses the existing Secrets' certificate and tokens"
cd_stop
finish
