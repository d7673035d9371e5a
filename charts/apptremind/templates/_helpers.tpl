{{- define "apptremind.labels" -}}
app.kubernetes.io/part-of: apptremind
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version }}
{{- end }}

{{- define "apptremind.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag }}
{{- end }}

{{- define "apptremind.dbEnv" -}}
- name: APPTREMIND_DB_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ .root.Values.existingSecret }}
      key: {{ .name }}-db-password
- name: APPTREMIND_DATABASE_URL
  value: "postgresql://apptremind_{{ .name }}:$(APPTREMIND_DB_PASSWORD)@{{ .root.Values.postgres.host }}:{{ .root.Values.postgres.port }}/apptremind_{{ .name }}"
- name: APPTREMIND_KAFKA_BOOTSTRAP_SERVERS
  value: {{ .root.Values.kafka.bootstrapServers | quote }}
- name: APPTREMIND_SERVICE_NAME
  value: {{ .name | quote }}
- name: APPTREMIND_LOG_LEVEL
  value: {{ .root.Values.logLevel | quote }}
- name: APPTREMIND_OTEL_EXPORTER
  value: {{ .root.Values.otelExporter | quote }}
- name: APPTREMIND_HTTP_PORT
  value: {{ .root.Values.sidePort | quote }}
{{- end }}
