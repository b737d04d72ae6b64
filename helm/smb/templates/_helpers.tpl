{{- define "smb.env" -}}
{{- range $k, $v := .Values.config }}
- name: {{ $k }}
  value: {{ $v | quote }}
{{- end }}
- name: SMB_SERVICES__AUTH_URL
  value: "http://{{ .Release.Name }}-auth:{{ .Values.grpcPort }}"
- name: SMB_SERVICES__ORCHESTRATOR_URL
  value: "http://{{ .Release.Name }}-orchestrator:{{ .Values.grpcPort }}"
- name: SMB_SERVICES__CONNECTORS_URL
  value: "http://{{ .Release.Name }}-connectors:{{ .Values.grpcPort }}"
{{- end -}}
