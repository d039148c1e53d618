// Disaggregated prefill/decode on the chart: the values `switchyard plan --emit-values` writes for a
// P/D fleet pass `helm lint --strict` (the values schema) and render one Deployment per role, each
// with its replicas and TP, the role label the router's discovery reads, NixlConnector as producer or
// consumer, and the side-channel address; KEDA's one pair of bounds is off so each pool keeps its size,
// and engines admit each other's KV reads. A P/D role with KV offload is refused (one connector).
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { stringify } from "yaml";
import { cliCommand } from "../../bench/support/cli.js";
import { byKind, chart, container, envOf, one, render, renderRaw, RENDER_KUBE_VERSION } from "./chart.js";
import { requireTool, run } from "./tools.js";

const dir = mkdtempSync(join(tmpdir(), "switchyard-helm-pd-"));
after(() => rmSync(dir, { recursive: true, force: true }));

const SCENARIO = {
  name: "P/D on the chart",
  slo: { ttft_p90_ms: 2000, tpot_p90_ms: 20 },
  workload: { prompt_tokens: 8000, output_tokens: 200, qps: 4 },
  fleet: {
    model: "meta-llama/Llama-3.1-8B-Instruct",
    gpu: "h100",
    engines: 4,
    disaggregated: { prefill_engines: 3, decode_engines: 1, decode_tensor_parallel_size: 2 },
  },
  ops: { kubernetes: true, hbm_monitoring: true },
  simulation: { requests: 120 },
};

describe("helm chart: disaggregated prefill and decode", { timeout: 300_000 }, () => {
  it("renders the plan's P/D values as a prefill and a decode Deployment with NixlConnector, chart-validated", (t) => {
    const helm = requireTool(t, "helm");
    if (!helm) return;
    const scenario = join(dir, "pd.yaml");
    const values = join(dir, "values.yaml");
    writeFileSync(scenario, stringify(SCENARIO));
    const { cmd, args } = cliCommand();
    const p = spawnSync(
      cmd,
      [...args, "plan", "--scenario", scenario, "--no-sweep", "--format", "json", "--emit-values", values],
      {
        encoding: "utf8",
        timeout: 120_000,
        maxBuffer: 16 * 2 ** 20,
      },
    );
    assert.equal(p.status, 0, p.stderr);
    const plan = JSON.parse(p.stdout);
    assert.deepEqual(plan.fleet.disaggregated, {
      prefill_engines: 3,
      decode_engines: 1,
      prefill_tensor_parallel_size: 1,
      decode_tensor_parallel_size: 2,
    });
    assert.equal(plan.kv_offload.choice, "none");
    const lint = run(helm, [
      "lint",
      chart,
      "--strict",
      "--kube-version",
      RENDER_KUBE_VERSION,
      "--values",
      values,
    ]);
    assert.equal(lint.status, 0, `helm lint\n${lint.stdout}${lint.stderr}`);
    const objs = render(helm, values);
    const roles = [
      { role: "prefill", replicas: 3, tp: 1, kvRole: "kv_producer" },
      { role: "decode", replicas: 1, tp: 2, kvRole: "kv_consumer" },
    ];
    for (const r of roles) {
      const d = one(objs, "Deployment", `-${r.role}`);
      assert.equal(d.spec.replicas, r.replicas, r.role);
      assert.equal(d.spec.template.metadata.labels["switchyard.dev/role"], r.role);
      const c = container(d);
      assert.equal(String(c.resources.limits["nvidia.com/gpu"]), String(r.tp));
      assert.ok(c.args.includes(`--tensor-parallel-size=${r.tp}`), c.args.join(" "));
      assert.ok(
        c.args.includes(`--kv-transfer-config={"kv_connector":"NixlConnector","kv_role":"${r.kvRole}"}`),
        c.args.join(" "),
      );
      const env = envOf(c);
      assert.equal(env.get("VLLM_NIXL_SIDE_CHANNEL_HOST")?.value, "$(POD_IP)");
      assert.ok(env.get("POD_IP")?.valueFrom);
    }
    assert.equal(byKind(objs, "ScaledObject").length, 0, "KEDA would hold both pools to one size");
    // engines admit engines: decode engines read prefill engines' KV
    const np = one(objs, "NetworkPolicy", "-engine");
    const engineSelector = np.spec.podSelector;
    assert.ok(
      np.spec.ingress.some(
        (i: { from: unknown[]; ports?: unknown }) =>
          i.ports === undefined &&
          i.from.some((f) => JSON.stringify(f) === JSON.stringify({ podSelector: engineSelector })),
      ),
      JSON.stringify(np.spec.ingress),
    );
    // one KV connector per engine: a P/D role with offload is refused at render time
    const refused = renderRaw(helm, values, ["--set", "engines.offload.mode=lmcache"]);
    assert.notEqual(refused.status, 0);
    assert.match(refused.stderr, /role prefill runs NixlConnector, and an engine has one KV connector/);
  });
});
