{{/* The chart's name, or nameOverride. */}}
{{- define "cairnd.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 40 | trimSuffix "-" -}}
{{- end -}}

{{/*
The release's full name, the StatefulSet's and the pods' prefix. Capped at
40 characters so that "<fullname>-<ordinal>" and "<fullname>-headless"
stay DNS labels (63) with room for the ordinal and the controller hash.
*/}}
{{- define "cairnd.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The headless Service that gives every shard its DNS name. */}}
{{- define "cairnd.headless" -}}
{{- printf "%s-headless" (include "cairnd.fullname" .) -}}
{{- end -}}

{{- define "cairnd.selectorLabels" -}}
app.kubernetes.io/name: {{ include "cairnd.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "cairnd.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "cairnd.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "cairnd.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* The Secret with the tokens file: an existing one or the chart's. */}}
{{- define "cairnd.tokensSecret" -}}
{{- default (printf "%s-tokens" (include "cairnd.fullname" .)) .Values.tokens.existingSecret -}}
{{- end -}}

{{/* The kubernetes.io/tls Secret: an existing one (cert-manager's) or the chart's. */}}
{{- define "cairnd.tlsSecret" -}}
{{- default (printf "%s-tls" (include "cairnd.fullname" .)) .Values.tls.existingSecret -}}
{{- end -}}

{{/*
cairnd's --max-size: storage.maxSize, or the volume less headroomPercent,
in whole MiB. The arithmetic is in int64 (sprig's mul and div): values are
float64 in Helm, and a float printed whole would read "4.096e+04".
*/}}
{{- define "cairnd.maxSize" -}}
{{- if .Values.storage.maxSize -}}
{{- .Values.storage.maxSize -}}
{{- else -}}
{{- $size := .Values.storage.size -}}
{{- $n := regexFind "^[0-9]+" $size | atoi | int64 -}}
{{- $unit := trimPrefix (toString $n) $size -}}
{{- $mib := dict "Mi" 1 "Gi" 1024 "Ti" 1048576 -}}
{{- $total := mul $n (required (printf "storage.size %q: expected a number of Mi, Gi or Ti" $size) (get $mib $unit)) -}}
{{- $keep := div (mul $total (sub 100 (int64 .Values.storage.headroomPercent))) 100 -}}
{{- if lt $keep 64 -}}
{{- fail (printf "storage.size %s leaves %dM for blobs after %d%% headroom (at least 64M): give a larger volume or less headroom" $size $keep (int64 .Values.storage.headroomPercent)) -}}
{{- end -}}
{{- printf "%dM" $keep -}}
{{- end -}}
{{- end -}}

{{/* Seconds before SIGKILL: above cairnd's shutdown delay plus its drain
timeout (both run after SIGTERM). */}}
{{- define "cairnd.gracePeriod" -}}
{{- $drain := add (int64 .Values.cairnd.shutdownDelaySeconds) (int64 .Values.cairnd.drainTimeoutSeconds) -}}
{{- $grace := int64 .Values.terminationGracePeriodSeconds -}}
{{- if eq $grace 0 -}}
{{- add $drain 15 -}}
{{- else if le $grace $drain -}}
{{- fail (printf "terminationGracePeriodSeconds (%d) must be above cairnd.shutdownDelaySeconds + cairnd.drainTimeoutSeconds (%d): the kubelet would kill cairnd before its calls finish" $grace $drain) -}}
{{- else -}}
{{- $grace -}}
{{- end -}}
{{- end -}}

{{/* The URL scheme clients use. */}}
{{- define "cairnd.scheme" -}}
{{- if .Values.tls.enabled -}}grpcs{{- else -}}grpc{{- end -}}
{{- end -}}

{{/* Every shard's URL, space-separated (CAIRN_CACHE takes this list). */}}
{{- define "cairnd.shardURLs" -}}
{{- $full := include "cairnd.fullname" . -}}
{{- $headless := include "cairnd.headless" . -}}
{{- $urls := list -}}
{{- range $i := until (int .Values.replicas) -}}
{{- $urls = append $urls (printf "%s://%s-%d.%s.%s.svc.%s:%d" (include "cairnd.scheme" $) $full $i $headless $.Release.Namespace $.Values.clusterDomain (int64 $.Values.port)) -}}
{{- end -}}
{{- join " " $urls -}}
{{- end -}}
