// Rendering the Helm chart for the deploy tests: `helm template` with the test release and
// namespace, parsed into objects, and small finders over them.
import assert from "node:assert/strict";
import { isAbsolute, join } from "node:path";
import { parseAllDocuments } from "yaml";
import type { TestContext } from "node:test";
import { repoRoot, requireTool, run } from "./tools.js";

export const chart = join(repoRoot(), "deploy", "helm", "switchyard");
export const RELEASE = "sy";
export const NAMESPACE = "inference";
/** helm built from source assumes Kubernetes 1.20 without a cluster; render for a current one */
export const RENDER_KUBE_VERSION = "1.31.0";
/**
 * API groups whose kinds are CRDs, not in the Kubernetes OpenAPI: the Prometheus Operator's are
 * checked by assertions; the rest against their projects' published CRDs (helm-custom.test.ts, and
 * KEDA's ScaledObject in helm-autoscale.test.ts).
 */
export const CRD_GROUPS = [
  "monitoring.coreos.com/",
  "keda.sh/",
  "leaderworkerset.x-k8s.io/",
  "ray.io/",
  "inference.networking.k8s.io/",
  "gateway.networking.k8s.io/",
];
/** the CRD kinds with published schemas in deploy/ci/fetch-crds.sh's cache */
export const PUBLISHED_CRD_KINDS = ["LeaderWorkerSet", "RayCluster", "InferencePool", "HTTPRoute"];

/** how objects are written for Python validators: PyYAML reads YAML 1.1, where a bare `yes` is true */
export const YAML_1_1 = { version: "1.1" } as const;

export type K8sObject = {
  apiVersion: string;
  kind: string;
  metadata: { name: string; labels?: Record<string, string>; annotations?: Record<string, string> };
  spec?: any; // eslint-disable-line @typescript-eslint/no-explicit-any
  data?: Record<string, string>;
};

export function render(helm: string, valuesFile?: string, extra: string[] = []): K8sObject[] {
  const r = renderRaw(helm, valuesFile, extra);
  assert.equal(r.status, 0, `helm template ${valuesFile ?? ""} ${extra.join(" ")}\n${r.stderr}`);
  return parseAllDocuments(r.stdout)
    .map((d) => {
      assert.deepEqual(d.errors, [], `rendered YAML does not parse: ${d.errors.join("; ")}`);
      return d.toJS() as K8sObject | null;
    })
    .filter((o): o is K8sObject => o !== null);
}

/** `helm template` as it ran: for the tests that expect a refusal. */
export function renderRaw(helm: string, valuesFile?: string, extra: string[] = []) {
  const args = ["template", RELEASE, chart, "--namespace", NAMESPACE, "--kube-version", RENDER_KUBE_VERSION];
  if (valuesFile) args.push("--values", isAbsolute(valuesFile) ? valuesFile : join(chart, "ci", valuesFile));
  return run(helm, [...args, ...extra]);
}

export const byKind = (objs: K8sObject[], kind: string) => objs.filter((o) => o.kind === kind);
export const one = (objs: K8sObject[], kind: string, nameEnd: string): K8sObject => {
  const found = objs.filter((o) => o.kind === kind && o.metadata.name.endsWith(nameEnd));
  assert.equal(found.length, 1, `expected one ${kind} named *${nameEnd}, got ${found.length}`);
  return found[0]!;
};
export const container = (deploy: K8sObject) => deploy.spec.template.spec.containers[0];
export const envOf = (c: { env?: Array<{ name: string; value?: string; valueFrom?: unknown }> }) =>
  new Map((c.env ?? []).map((e) => [e.name, e]));

/**
 * A describe block's renders: each values file and flag set rendered once with the real helm, then
 * served from the cache; undefined where helm is missing (`requireTool` has failed or skipped the test)
 */
export function renderCache(): (
  t: TestContext,
  file: string | undefined,
  extra?: string[],
) => K8sObject[] | undefined {
  const cache = new Map<string, K8sObject[]>();
  return (t, file, extra = []) => {
    const helm = requireTool(t, "helm");
    if (!helm) return undefined;
    const key = `${file ?? "defaults"} ${extra.join(" ")}`;
    let objs = cache.get(key);
    if (!objs) cache.set(key, (objs = render(helm, file, extra)));
    return objs;
  };
}
