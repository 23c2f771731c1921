{{- define "eats.env" -}}
{{- range $k, $v := .Values.env }}
- name: {{ $k }}
  value: {{ $v | quote }}
{{- end }}
{{- range .Values.secrets.keys }}
- name: {{ . }}
  valueFrom:
    secretKeyRef:
      name: {{ $.Release.Name }}-secrets
      key: {{ . }}
{{- end }}
{{- end -}}
{{- define "eats.volumes" -}}
volumes:
  - name: secrets-store
    csi:
      driver: secrets-store.csi.k8s.io
      readOnly: true
      volumeAttributes:
        secretProviderClass: {{ .Release.Name }}-aws
{{- end -}}
{{- define "eats.podSecurity" -}}
securityContext:
  runAsNonRoot: true
  runAsUser: 999
  fsGroup: 999
{{- end -}}
