{{/* Names: <release>-<chart> unless overridden, cut to 63 characters for DNS labels. */}}
{{- define "switchyard.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "switchyard.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "switchyard.labels" -}}
app.kubernetes.io/name: {{ include "switchyard.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{ include "switchyard.metaLabels" . }}
{{- end -}}

{{/* The labels that are not selector labels, for pod templates that add the selector labels. */}}
{{- define "switchyard.metaLabels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: switchyard
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Selector labels for one component (router, engine, cache-server). */}}
{{- define "switchyard.selectorLabels" -}}
app.kubernetes.io/name: {{ include "switchyard.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "switchyard.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "switchyard.routerName" -}}{{ include "switchyard.fullname" . }}-router{{- end -}}
{{- define "switchyard.cacheServerName" -}}{{ include "switchyard.fullname" . }}-cache-server{{- end -}}
{{/*
"true" when the cache server announces what it holds to the router (cacheServer.kvEvents): only where
the engines load from it themselves, as their LMCache lm:// remote (layout connector). In the mp layout
the engines load from their node's LMCache server, which keeps its own keys in the cache server.
*/}}
{{- define "switchyard.cacheServerEvents" -}}
{{- if and .Values.cacheServer.enabled .Values.cacheServer.kvEvents.enabled .Values.engines.enabled (eq (include "switchyard.lmcacheLayout" .) "connector") -}}true{{- end -}}
{{- end -}}
{{- define "switchyard.engineName" -}}
{{- printf "%s-engine-%s" (include "switchyard.fullname" .root) .model.name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The writable emptyDirs every read-only-root container gets. */}}
{{- define "switchyard.tmpVolume" -}}
- name: tmp
  emptyDir:
    sizeLimit: 1Gi
{{- end -}}

{{/*
preStop drain: poll the engine's own /metrics until no request is running or waiting, or the drain
timeout passes. Written once for the vLLM image (python3) and once for ours (node); no curl needed.
*/}}
{{- define "switchyard.drainPython" -}}
import re, time, urllib.request
time.sleep({{ .Values.engines.drain.delaySeconds }})
end = time.time() + {{ .Values.engines.drain.timeoutSeconds }}
pat = re.compile(r"^vllm:num_requests_(?:running|waiting)(?:\{[^}]*\})? (\S+)$", re.M)
while time.time() < end:
    try:
        text = urllib.request.urlopen("http://127.0.0.1:{{ .Values.engines.port }}/metrics", timeout=3).read().decode()
    except Exception:
        break
    if sum(float(v) for v in pat.findall(text)) == 0:
        break
    time.sleep(2)
{{- end -}}

{{- define "switchyard.drainNode" -}}
const pat = /^vllm:num_requests_(?:running|waiting)(?:\{[^}]*\})? (\S+)$/gm;
const end = Date.now() + {{ .Values.engines.drain.timeoutSeconds }} * 1000;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
(async () => {
  await sleep({{ .Values.engines.drain.delaySeconds }} * 1000);
  while (Date.now() < end) {
    let text;
    try {
      text = await (await fetch("http://127.0.0.1:{{ .Values.engines.port }}/metrics", { signal: AbortSignal.timeout(3000) })).text();
    } catch { return; }
    let busy = 0;
    for (const m of text.matchAll(pat)) busy += Number(m[1]);
    if (busy === 0) return;
    await sleep(2000);
  }
})();
{{- end -}}
