// The chart's engine autoscaling modes: `waiting` (KEDA on vllm:num_requests_waiting, as it always
// rendered) and `slo` (KEDA, or an HPA on an External metric, on the router's SLO decision,
// switchyard_autoscale_desired_replicas). The slo ScaledObject validates strictly against KEDA's
// published CRD (deploy/ci/fetch-crds.sh, test/deploy/crd_validate.py), and the router flags the
// chart passes are the router's own.
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { stringify } from "yaml";
import { schemaFlags } from "../../src/config/schema-flags.js";
import { routerConfigSchema } from "../../src/router/config/config.js";
import { poolLabel } from "../../src/router/autoscale/loop.js";
import { byKind, container, one, render, renderRaw, YAML_1_1 } from "./chart.js";
import { repoRoot, requireCrds, requireTool, run } from "./tools.js";

const ENGINE = "-engine-llama-3-1-8b";
const MODEL = "meta-llama/Llama-3.1-8B-Instruct";

describe("helm chart: engine autoscaling modes", { timeout: 300_000 }, () => {
  it("waiting mode (the default) renders the ScaledObject it always did: waiting requests per replica", (t) => {
    const helm = requireTool(t, "helm");
    if (!helm) return;
    for (const objs of [
      render(helm),
      render(helm, undefined, ["--set", "engines.autoscaling.mode=waiting"]),
    ]) {
      const so = one(objs, "ScaledObject", ENGINE);
      assert.deepEqual(so.spec, {
        scaleTargetRef: { apiVersion: "apps/v1", kind: "Deployment", name: `sy-switchyard${ENGINE}` },
        minReplicaCount: 1,
        maxReplicaCount: 4,
        pollingInterval: 15,
        cooldownPeriod: 300,
        triggers: [
          {
            type: "prometheus",
            metadata: {
              serverAddress: "http://prometheus-operated.monitoring.svc:9090",
              query: `sum(vllm:num_requests_waiting{namespace="inference",model_name="${MODEL}"})`,
              threshold: "8",
            },
          },
        ],
      });
      const args: string[] = container(one(objs, "Deployment", "-router")).args;
      assert.ok(!args.some((a) => a.startsWith("--autoscale")), "the router decides nothing");
    }
  });

  it("slo mode: KEDA follows the router's desired replicas for the pool, and the router runs the decision", (t) => {
    const helm = requireTool(t, "helm");
    if (!helm) return;
    const objs = render(helm, "autoscale-slo-values.yaml");
    const so = one(objs, "ScaledObject", ENGINE);
    assert.equal(so.spec.minReplicaCount, 1);
    assert.equal(so.spec.maxReplicaCount, 6);
    assert.deepEqual(so.spec.triggers, [
      {
        type: "prometheus",
        metricType: "AverageValue",
        metadata: {
          serverAddress: "http://prometheus-operated.monitoring.svc:9090",
          query: `max(switchyard_autoscale_desired_replicas{namespace="inference",model="${MODEL}",role="mixed"})`,
          threshold: "1",
        },
      },
    ]);
    assert.equal(
      so.spec.advanced.horizontalPodAutoscalerConfig.behavior.scaleDown.stabilizationWindowSeconds,
      0,
      "the router's decision holds its own window",
    );
    assert.equal(one(objs, "Deployment", ENGINE).spec.replicas, undefined, "KEDA owns replicas");
    const args: string[] = container(one(objs, "Deployment", "-router")).args;
    for (const a of [
      "--autoscale",
      "--autoscale-min=1",
      "--autoscale-max=6",
      "--autoscale-ttft-p90-ms=1500",
      "--autoscale-tpot-p90-ms=80",
      "--autoscale-startup=90s",
    ])
      assert.ok(args.includes(a), `${a} in ${args.join(" ")}`);
    // every --autoscale flag the chart passes is one the router declares
    const known = new Set(schemaFlags(routerConfigSchema).map((f) => f.name));
    for (const a of args.filter((x) => x.startsWith("--autoscale")))
      assert.ok(known.has(a.slice(2).split("=")[0]!), `the router has no flag ${a}`);
  });

  it("slo mode with scaler hpa: an autoscaling/v2 HPA on the External metric, selected by the router's pool label", (t) => {
    const helm = requireTool(t, "helm");
    if (!helm) return;
    const objs = render(helm, "autoscale-slo-values.yaml", ["--set", "engines.autoscaling.slo.scaler=hpa"]);
    assert.equal(byKind(objs, "ScaledObject").length, 0);
    const hpa = one(objs, "HorizontalPodAutoscaler", ENGINE);
    assert.equal(hpa.spec.scaleTargetRef.name, `sy-switchyard${ENGINE}`);
    assert.equal(hpa.spec.maxReplicas, 6);
    const m = hpa.spec.metrics[0];
    assert.equal(m.type, "External");
    assert.equal(m.external.metric.name, "switchyard_autoscale_desired_replicas");
    assert.deepEqual(m.external.metric.selector.matchLabels, { pool: poolLabel(MODEL, "mixed") });
    assert.deepEqual(m.external.target, { type: "AverageValue", averageValue: "1" });
    const validator = requireTool(t, "kubernetes-validate");
    if (!validator) return;
    const dir = mkdtempSync(join(tmpdir(), "switchyard-hpa-"));
    try {
      const f = join(dir, "hpa.yaml");
      writeFileSync(f, stringify(hpa, YAML_1_1));
      const r = run(validator, ["--strict", "--quiet", "-k", "1.31.0", f], { timeoutMs: 120_000 });
      assert.equal(r.status, 0, `${r.stdout}${r.stderr}`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("slo mode refuses a router that sees engines only through their Services", (t) => {
    const helm = requireTool(t, "helm");
    if (!helm) return;
    const r = renderRaw(helm, "autoscale-slo-values.yaml", ["--set", "router.discovery.mode=static"]);
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /mode=slo needs router.discovery.mode=kubernetes/);
  });

  it("every ScaledObject, waiting and slo, validates strictly against KEDA's published CRD", (t) => {
    const crds = requireCrds(t);
    const helm = requireTool(t, "helm");
    const python = crds && helm && requireTool(t, "python3");
    if (!python) return;
    const objs = [...render(helm!), ...render(helm!, "autoscale-slo-values.yaml")].filter(
      (o) => o.kind === "ScaledObject",
    );
    assert.equal(objs.length, 2);
    const dir = mkdtempSync(join(tmpdir(), "switchyard-keda-"));
    try {
      const file = join(dir, "scaled.yaml");
      writeFileSync(file, objs.map((o) => stringify(o, YAML_1_1)).join("---\n"));
      // and it catches a mistake: a trigger field KEDA does not have
      const bad = structuredClone(objs[1]!);
      bad.spec.triggers[0].metricsType = "Value";
      writeFileSync(join(dir, "bad.yaml"), stringify(bad, YAML_1_1));
      const script = join(repoRoot(), "test", "deploy", "crd_validate.py");
      const r = run(python!, [script, crds!, file, join(dir, "bad.yaml")], { timeoutMs: 240_000 });
      const report = JSON.parse(r.stdout) as { objects: number; errors: string[] };
      assert.deepEqual(
        report.errors.filter((e) => e.startsWith("scaled.yaml")),
        [],
        "the rendered ScaledObjects are valid",
      );
      assert.equal(report.objects, 3);
      assert.ok(
        report.errors.some((e) => e.startsWith("bad.yaml") && /metricsType/.test(e)),
        report.errors.join("\n"),
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
