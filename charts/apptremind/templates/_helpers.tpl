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
- name: APPTREMIND_AUTH_TARGET
  value: {{ printf "auth:%v" .root.Values.services.auth.grpcPort | quote }}
- name: APPTREMIND_SERVICE_NAME
  value: {{ .serviceName | default .name | quote }}
- name: APPTREMIND_LOG_LEVEL
  value: {{ .root.Values.logLevel | quote }}
- name: APPTREMIND_OTEL_EXPORTER
  value: {{ .root.Values.otelExporter | quote }}
- name: APPTREMIND_HTTP_PORT
  value: {{ .root.Values.sidePort | quote }}
{{- end }}

{{- define "apptremind.smsAuthToken" -}}
valueFrom:
  secretKeyRef:
    name: {{ .Values.existingSecret }}
    key: sms-auth-token
{{- end }}

{{/* notification-service's own settings, shared by the service and the stream worker. */}}
{{- define "apptremind.notificationEnv" -}}
- name: APPTREMIND_BOOKING_TARGET
  value: {{ .Values.notification.bookingTarget | default (printf "booking:%v" .Values.services.booking.grpcPort) | quote }}
- name: APPTREMIND_SMS_AUTH_TOKEN
  {{- include "apptremind.smsAuthToken" . | nindent 2 }}
# SMS reminders hold a credit of the plan's SMS quota at billing.
- name: APPTREMIND_BILLING_TARGET
  value: {{ printf "billing:%v" .Values.services.billing.grpcPort | quote }}
{{- end }}

{{/* The providers the stream worker sends through (services/notification/apptremind_notification/channels). */}}
{{- define "apptremind.providerEnv" -}}
{{- $smtp := .Values.providers.smtp -}}
{{- $sms := .Values.providers.sms -}}
- name: APPTREMIND_SMTP_HOST
  value: {{ $smtp.host | quote }}
- name: APPTREMIND_SMTP_PORT
  value: {{ $smtp.port | quote }}
- name: APPTREMIND_SMTP_STARTTLS
  value: {{ $smtp.starttls | quote }}
- name: APPTREMIND_SMTP_SENDER
  value: {{ $smtp.sender | quote }}
- name: APPTREMIND_SMTP_CA_FILE
  value: {{ $smtp.caFile | quote }}
{{- if $smtp.username }}
- name: APPTREMIND_SMTP_USERNAME
  value: {{ $smtp.username | quote }}
- name: APPTREMIND_SMTP_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ .Values.existingSecret }}
      key: smtp-password
{{- end }}
- name: APPTREMIND_SMS_BASE_URL
  value: {{ $sms.baseUrl | quote }}
{{- with $sms.accountSid }}
- name: APPTREMIND_SMS_ACCOUNT_SID
  value: {{ . | quote }}
{{- end }}
{{- with $sms.sender }}
- name: APPTREMIND_SMS_SENDER
  value: {{ . | quote }}
{{- end }}
- name: APPTREMIND_SMS_STATUS_CALLBACK_URL
  value: {{ if .Values.edge.publicBaseUrl }}{{ printf "%s/webhooks/twilio/status" (trimSuffix "/" .Values.edge.publicBaseUrl) | quote }}{{ else }}""{{ end }}
{{- end }}

{{/* A calling service's client secret (ADR 0013); its client id is its APPTREMIND_SERVICE_NAME. */}}
{{- define "apptremind.clientSecretEnv" -}}
- name: APPTREMIND_SERVICE_CLIENT_SECRET
  valueFrom:
    secretKeyRef:
      name: {{ .root.Values.serviceCredentials.secretName }}
      key: {{ .client }}-client-secret
{{- end }}

{{/* auth-service's list of the clients' secret hashes. */}}
{{- define "apptremind.serviceClientsEnv" -}}
- name: APPTREMIND_AUTH_SERVICE_CLIENTS
  valueFrom:
    secretKeyRef:
      name: {{ .Values.serviceCredentials.secretName }}
      key: auth-service-clients
{{- end }}
