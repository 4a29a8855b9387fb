{{/*
The prefix of this release's object names: the release name when it contains
"portcullis", else "<release>-portcullis" (at most 52 characters, so that
"-controller" and the other suffixes fit in 63).
*/}}
{{- define "portcullis.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 52 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 52 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* The controller's objects (ServiceAccount, Deployment, Service, ClusterRole, ...). */}}
{{- define "portcullis.controller" -}}
{{- include "portcullis.fullname" . -}}-controller
{{- end -}}

{{/* Selector labels: fixed, a Deployment's selector cannot change. */}}
{{- define "portcullis.selectorLabels" -}}
app.kubernetes.io/name: portcullis-controller
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* The standard labels of every object of the chart. */}}
{{- define "portcullis.labels" -}}
{{ include "portcullis.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: portcullis
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end -}}

{{/*
What the controller reads and writes in every watched namespace
(crates/portcullis-kube/src/rbac.rs, Where::Watched): one ClusterRole rule set
when every namespace is watched, a Role per namespace with watchNamespaces.
*/}}
{{- define "portcullis.watchedRules" -}}
- apiGroups: ["gateway.networking.k8s.io"]
  resources: [gateways, listenersets, httproutes, grpcroutes, tlsroutes, tcproutes, udproutes, backendtlspolicies]
  verbs: [get, list, watch]
- apiGroups: ["gateway.networking.k8s.io"]
  resources: [referencegrants]
  verbs: [list, watch]
- apiGroups: ["gateway.networking.k8s.io"]
  resources: [gateways/status, listenersets/status, httproutes/status, grpcroutes/status, tlsroutes/status, tcproutes/status, udproutes/status, backendtlspolicies/status]
  verbs: [patch]
- apiGroups: ["portcullis.dev"]
  resources: [securitypolicies, backendtrafficpolicies, clienttrafficpolicies]
  verbs: [get, list, watch]
- apiGroups: ["portcullis.dev"]
  resources: [securitypolicies/status, backendtrafficpolicies/status, clienttrafficpolicies/status]
  verbs: [patch]
- apiGroups: [""]
  resources: [configmaps]
  verbs: [get, list, watch, create, patch]
- apiGroups: [""]
  resources: [services]
  verbs: [get, list, watch, create, patch]
- apiGroups: [""]
  resources: [serviceaccounts]
  verbs: [get, list, watch, create, patch]
- apiGroups: ["apps"]
  resources: [deployments]
  verbs: [get, list, watch, create, patch]
- apiGroups: ["discovery.k8s.io"]
  resources: [endpointslices]
  verbs: [list, watch]
- apiGroups: ["networking.k8s.io"]
  resources: [ingresses]
  verbs: [get, list, watch]
- apiGroups: ["networking.k8s.io"]
  resources: [ingresses/status]
  verbs: [patch]
- apiGroups: [""]
  resources: [events]
  verbs: [create]
{{- end -}}

{{/* Reading Secrets (metadata list/watch, get of the referenced ones). */}}
{{- define "portcullis.secretRules" -}}
- apiGroups: [""]
  resources: [secrets]
  verbs: [get, list, watch]
{{- end -}}
