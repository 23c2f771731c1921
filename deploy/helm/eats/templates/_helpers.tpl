{{/* Names and labels: everything is scoped to the release, so two releases in one
namespace never select each other's pods. */}}
{{- define "eats.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "eats.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "eats.labels" -}}
{{ include "eats.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "eats.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "eats.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "eats.image" -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}
{{- end -}}

{{/* The Host header of the kubelet's HTTP probes: a name ALLOWED_HOSTS admits (the pod IP
is not one, and Django answers 400 to it). */}}
{{- define "eats.probeHost" -}}
{{- default (first (splitList "," .Values.env.ALLOWED_HOSTS)) .Values.web.probeHost | trim -}}
{{- end -}}

{{/* Non-secret settings, in the ConfigMap; secrets come from files (see eats.volumes). */}}
{{- define "eats.envFrom" -}}
- configMapRef:
    name: {{ include "eats.fullname" . }}-env
{{- end -}}

{{/* Restart every pod when its settings change (the ConfigMap's content) or when the
SecretProviderClass changes; a rotated secret value is picked up by Reloader watching the
synced Secret (annotation below), since the CSI driver rewrites only the mounted files. */}}
{{- define "eats.podAnnotations" -}}
checksum/config: {{ include (print $.Template.BasePath "/configmap.yaml") . | sha256sum }}
checksum/secrets: {{ include (print $.Template.BasePath "/secretproviderclass.yaml") . | sha256sum }}
{{- with .Values.podAnnotations }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "eats.workloadAnnotations" -}}
{{- if .Values.secrets.reloader }}
secret.reloader.stakater.com/reload: {{ include "eats.fullname" . }}-secrets
{{- end }}
{{- end -}}

{{- define "eats.volumes" -}}
- name: secrets-store
  csi:
    driver: secrets-store.csi.k8s.io
    readOnly: true
    volumeAttributes:
      secretProviderClass: {{ include "eats.fullname" . }}-aws
- name: tmp
  emptyDir:
    sizeLimit: 256Mi
{{- end -}}

{{- define "eats.volumeMounts" -}}
- name: secrets-store
  mountPath: /mnt/secrets
  readOnly: true
- name: tmp
  mountPath: /tmp
{{- end -}}

{{- define "eats.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.securityContext.runAsUser }}
runAsGroup: {{ .Values.securityContext.runAsUser }}
fsGroup: {{ .Values.securityContext.runAsUser }}
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "eats.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
runAsUser: {{ .Values.securityContext.runAsUser }}
runAsGroup: {{ .Values.securityContext.runAsUser }}
privileged: false
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "eats.podCommon" -}}
serviceAccountName: {{ include "eats.serviceAccountName" . }}
automountServiceAccountToken: false  # IRSA and the CSI driver project their own tokens
enableServiceLinks: false
securityContext:
  {{- include "eats.podSecurityContext" . | nindent 2 }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
volumes:
  {{- include "eats.volumes" . | nindent 2 }}
{{- end -}}
