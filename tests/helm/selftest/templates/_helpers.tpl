{{- define "selftest.greet" -}}
hello {{ .Release.Name }}
{{- end -}}
