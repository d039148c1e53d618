// `switchyard plan --emit-values` renders with the Helm chart: for every example scenario the emitted
// values pass `helm lint --strict` and `helm template`, and the rendered engine carries what the plan
// decided (model, TP, utilisation, offload connector, replicas). deploy/helm/switchyard/ci/plan-values.yaml
// is the file plan emits for examples/scenarios/chat-multi-tenant.yaml, kept current by the first test
// (helm.test.ts renders every ci/ file, so the chart's own checks cover it too). Each plan's JSON is
// also held to what plan text must never name (planner/plan-text.ts).
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { after, describe, it } from "node:test";
import { parse as parseYaml, parseAllDocuments, stringify } from "yaml";
import { cliCommand } from "../../bench/support/cli.js";
import { assertPlanTextClean } from "../planner/plan-text.js";
import { repoRoot, requireTool, run } from "./tools.js";

const root = repoRoot();
const chart = join(root, "deploy", "helm", "switchyard");
const committed = join(chart, "ci", "plan-values.yaml");
const scenariosDir = join(root, "examples", "scenarios");
const COMMITTED_FROM = "chat-multi-tenant.yaml";
/**
 * Requests per simulation for the other examples: the rendering, not the figures, is under test here,
 * and the published-shape scenarios run 30k-token prompts (the full runs are bench/fleet/fidelity.ts)
 */
const RENDER_REQUESTS = 60;
const RENDER_KUBE_VERSION = "1.31.0";

interface PlanJson {
  planned: boolean;
  fleet: {
    gpu: string;
    engines: number;
    tensor_parallel_size: number;
    disaggregated?: {
      prefill_engines: number;
      decode_engines: number;
      prefill_tensor_parallel_size: number;
      decode_tensor_parallel_size: number;
    };
  };
  stack: { kind: string };
  kv_offload: { choice: "none" | "native" | "lmcache" };
  hbm: { gpu_memory_utilization: number };
  router: { policy: string };
}

const dir = mkdtempSync(join(tmpdir(), "switchyard-plan-values-"));
after(() => rmSync(dir, { recursive: true, force: true }));

function plan(scenario: string, valuesOut: string): PlanJson {
  const { cmd, args } = cliCommand();
  const r = spawnSync(
    cmd,
    [...args, "plan", "--scenario", scenario, "--no-sweep", "--format", "json", "--emit-values", valuesOut],
    { encoding: "utf8", timeout: 120_000, maxBuffer: 16 * 2 ** 20 },
  );
  assert.equal(r.status, 0, `plan ${scenario}: exit ${r.status}\n${r.stderr}`);
  assertPlanTextClean(r.stdout + r.stderr, `${basename(scenario)} (json)`);
  return JSON.parse(r.stdout) as PlanJson;
}

type Obj = { kind: string; metadata: { name: string }; spec?: any }; // eslint-disable-line @typescript-eslint/no-explicit-any

function lintAndRender(helm: string, values: string): Obj[] {
  const lint = run(helm, [
    "lint",
    chart,
    "--strict",
    "--kube-version",
    RENDER_KUBE_VERSION,
    "--values",
    values,
  ]);
  assert.equal(lint.status, 0, `helm lint --values ${values}\n${lint.stdout}${lint.stderr}`);
  const t = run(helm, ["template", "sy", chart, "--kube-version", RENDER_KUBE_VERSION, "--values", values]);
  assert.equal(t.status, 0, `helm template --values ${values}\n${t.stderr}`);
  return parseAllDocuments(t.stdout)
    .map((d) => {
      assert.deepEqual(d.errors, [], `rendered YAML does not parse: ${d.errors.join("; ")}`);
      return d.toJS() as Obj | null;
    })
    .filter((o): o is Obj => o !== null);
}

/** the rendered engine Deployment carries what the plan and the scenario say */
function checkEngine(
  objs: Obj[],
  p: PlanJson,
  scenario: { fleet: { model: string; engines: number; tensor_parallel_size?: number } },
): void {
  const engines = objs.filter((o) => o.kind === "Deployment" && o.metadata.name.includes("-engine-"));
  const pd = p.fleet.disaggregated;
  // a disaggregated plan: one Deployment per role, each with its replicas and TP (helm-pd.test.ts)
  if (pd) {
    const roles: [string, number, number][] = [
      ["prefill", pd.prefill_engines, pd.prefill_tensor_parallel_size],
      ["decode", pd.decode_engines, pd.decode_tensor_parallel_size],
    ];
    assert.equal(
      engines.length,
      2,
      `a prefill and a decode Deployment, got ${engines.map((o) => o.metadata.name)}`,
    );
    for (const [role, replicas, tp] of roles) {
      const d = engines.find((o) => o.metadata.name.endsWith(`-${role}`))!;
      assert.equal(d.spec.replicas, replicas, role);
      assert.ok(d.spec.template.spec.containers[0].args.includes(`--tensor-parallel-size=${tp}`), role);
    }
    return;
  }
  assert.equal(engines.length, 1, `one engine Deployment, got ${engines.map((o) => o.metadata.name)}`);
  const c = engines[0]!.spec.template.spec.containers[0];
  const args: string[] = c.args;
  const env = new Map<string, unknown>((c.env ?? []).map((e: { name: string }) => [e.name, e]));
  assert.equal(args[0], scenario.fleet.model);
  assert.ok(args.includes(`--gpu-memory-utilization=${p.hbm.gpu_memory_utilization}`), args.join(" "));
  assert.ok(args.includes("--prefix-caching-hash-algo=sha256_cbor"));
  assert.ok(args.includes("--dtype=auto"), `dtype rendered: ${args.find((a) => a.startsWith("--dtype"))}`);
  const gpus = c.resources?.limits?.["nvidia.com/gpu"];
  const tp = scenario.fleet.tensor_parallel_size ?? 1;
  assert.ok(args.includes(`--tensor-parallel-size=${tp}`));
  assert.equal(Number(gpus), tp, `GPUs: ${gpus}`);
  const seqs = args.find((a) => a.startsWith("--max-num-seqs="));
  assert.ok(seqs && Number(seqs.split("=")[1]) > 0, `max-num-seqs rendered: ${seqs}`);
  // LMCache in either layout: its MP server (vLLM >= 0.32, the chart's default image) or the connector
  const mp = args.includes("--kv-offloading-backend=lmcache");
  const lmcache = mp || args.some((a) => a.includes("LMCacheConnectorV1"));
  const native = args.some(
    (a) => a.includes("OffloadingConnector") || a === "--kv-offloading-backend=native",
  );
  assert.equal(
    lmcache,
    p.kv_offload.choice === "lmcache",
    `LMCache connector vs choice ${p.kv_offload.choice}`,
  );
  assert.equal(native, p.kv_offload.choice === "native", `native offload vs choice ${p.kv_offload.choice}`);
  assert.equal(env.has("LMCACHE_CHUNK_SIZE"), p.kv_offload.choice === "lmcache" && !mp);
  const scaled = objs.find((o) => o.kind === "ScaledObject");
  if (scaled) assert.equal(scaled.spec.minReplicaCount, scenario.fleet.engines);
  else assert.equal(engines[0]!.spec.replicas, scenario.fleet.engines);
  const router = objs.find((o) => o.kind === "Deployment" && o.metadata.name.endsWith("-router"));
  assert.ok(router?.spec.template.spec.containers[0].args.includes(`--policy=${p.router.policy}`));
}

describe("plan --emit-values renders with the chart", { timeout: 300_000 }, () => {
  it(`ci/plan-values.yaml is what plan emits for ${COMMITTED_FROM}, and it renders`, (t) => {
    const out = join(dir, "committed.yaml");
    const p = plan(join(scenariosDir, COMMITTED_FROM), out);
    assert.equal(p.planned, true);
    const regenerate = `node dist/src/cli/main.js plan --scenario examples/scenarios/${COMMITTED_FROM} --no-sweep --emit-values deploy/helm/switchyard/ci/plan-values.yaml`;
    assert.equal(
      readFileSync(committed, "utf8"),
      readFileSync(out, "utf8"),
      `deploy/helm/switchyard/ci/plan-values.yaml is stale: ${regenerate}`,
    );
    const helm = requireTool(t, "helm");
    if (!helm) return;
    const scenario = parseYaml(readFileSync(join(scenariosDir, COMMITTED_FROM), "utf8"));
    checkEngine(lintAndRender(helm, out), p, scenario);
  });

  const others = readdirSync(scenariosDir)
    .filter((f) => f.endsWith(".yaml") && f !== COMMITTED_FROM)
    .sort();
  it("covers the published-shape examples too", () => {
    assert.ok(
      others.includes("llmd-16xh100-high-cache.yaml") && others.includes("llmd-16xh100-low-cache.yaml"),
    );
  });
  for (const f of others) {
    it(`${f}: emitted values lint, render and carry the plan`, (t) => {
      const scenario = parseYaml(readFileSync(join(scenariosDir, f), "utf8"));
      scenario.simulation = { ...scenario.simulation, requests: RENDER_REQUESTS };
      const file = join(dir, basename(f));
      writeFileSync(file, stringify(scenario));
      const values = join(dir, `${basename(f, ".yaml")}.values.yaml`);
      const p = plan(file, values);
      assert.equal(p.planned, true);
      const helm = requireTool(t, "helm");
      if (!helm) return;
      // a scenario that leaves the fleet to the planner is checked against the fleet it chose
      const fleet = {
        ...scenario.fleet,
        engines: p.fleet.engines,
        tensor_parallel_size: p.fleet.tensor_parallel_size,
      };
      checkEngine(lintAndRender(helm, values), p, { ...scenario, fleet });
    });
  }
});
