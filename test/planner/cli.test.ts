// `switchyard plan` as a command: exit codes, --format json fields, --emit-values against the chart's
// values.yaml, --emit-rules, and scenario errors that name the field and repeat the value.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parse } from "yaml";
import { CliError } from "../../src/config/args.js";
import { main as plan } from "../../src/planner/cli.js";
import { policyReadsKv, ROUTER_POLICY_NAMES } from "../../src/routing/index.js";

const dir = mkdtempSync(join(tmpdir(), "plan-test-"));
test.after(() => rmSync(dir, { recursive: true, force: true }));

function write(name: string, yaml: string): string {
  const p = join(dir, name);
  writeFileSync(p, yaml);
  return p;
}

const SMALL = `
name: small
workload:
  prompt_tokens: 3000
  output_tokens: 64
  concurrency: 16
  shared_prefix_tokens: 2000
  prefix_reuse: multi-tenant
  tenants: 4
fleet:
  model: meta-llama/Llama-3.1-8B-Instruct
  gpu: h100
  engines: 2
  num_gpu_blocks_override: 600
  max_model_len: 8192
ops:
  kubernetes: true
  hbm_monitoring: true
simulation:
  requests: 48
  offload:
    mode: none
    shared_server: {size_gib: 4}
`;

async function capture(fn: () => Promise<number>): Promise<{ code: number; out: string; err: string }> {
  const out: string[] = [];
  const err: string[] = [];
  const log = console.log;
  const error = console.error;
  console.log = (...a: unknown[]) => void out.push(a.join(" "));
  console.error = (...a: unknown[]) => void err.push(a.join(" "));
  try {
    return { code: await fn(), out: out.join("\n"), err: err.join("\n") };
  } finally {
    console.log = log;
    console.error = error;
  }
}

test("plan --format json: the documented fields, exit 0, values and rules written", async () => {
  const scen = write("small.yaml", SMALL);
  const values = join(dir, "values.yaml");
  const rules = join(dir, "rules.yaml");
  const r = await capture(() =>
    plan([
      "--scenario",
      scen,
      "--format",
      "json",
      "--no-sweep",
      "--emit-values",
      values,
      "--emit-rules",
      rules,
    ]),
  );
  assert.equal(r.code, 0);
  const p = JSON.parse(r.out);
  assert.equal(p.stack.kind, "helm-chart");
  assert.ok(["none", "native", "lmcache"].includes(p.kv_offload.choice));
  assert.ok(Array.isArray(p.refusals));
  assert.equal(p.hbm.gpu_memory_utilization, 0.9);
  assert.equal(p.hbm.alert_threshold, 0.92);
  // 2 engines with a shared prefix: the cache-aware router, with every engine's KV-event channel
  assert.equal(p.router.policy, "hybrid");
  assert.equal(p.router.kv_events, true);
  assert.ok(p.router.engine_flags.some((f: string) => f.startsWith("--kv-events-config")));
  assert.ok(p.router.engine_flags.includes("--prefix-caching-hash-algo sha256_cbor"));
  assert.equal(p.router.engine_env.PYTHONHASHSEED, "0");
  for (const k of ["none", "native", "lmcache"]) {
    assert.ok(p.impact[k].throughput_tok_s > 0, k);
    assert.ok(p.impact[k].ttft_p50_ms > 0 && p.impact[k].ttft_p90_ms >= p.impact[k].ttft_p50_ms, k);
  }
  assert.match(p.gate.promql, /quantile_over_time\(0\.99, vllm:kv_cache_usage_perc\[24h\]\)/);
  const rule = parse(readFileSync(rules, "utf8"));
  assert.equal(rule.kind, "PrometheusRule");
  const alert = rule.spec.groups[0].rules[0];
  assert.match(alert.expr, /vllm:kv_cache_usage_perc\) >= 0\.92/);
  assert.equal(alert.for, "5m");
  const v = parse(readFileSync(values, "utf8"));
  assert.equal(v.engines.models[0].replicas, 2);
  assert.deepEqual(v.router, { policy: "hybrid" });
  assert.equal(v.engines.kvEvents.enabled, true);
  assert.equal(v.engines.models[0].model, "meta-llama/Llama-3.1-8B-Instruct");
});

/** every key path in `emitted` exists in the chart's values.yaml (list items checked against its first item) */
function assertFitsSchema(emitted: unknown, schema: unknown, path: string): void {
  if (Array.isArray(emitted)) {
    assert.ok(Array.isArray(schema), `${path} is a list in the chart`);
    for (const item of emitted) assertFitsSchema(item, (schema as unknown[])[0], `${path}[]`);
    return;
  }
  if (emitted === null || typeof emitted !== "object") return;
  assert.ok(schema !== null && typeof schema === "object", `${path} is a mapping in the chart`);
  for (const [k, v] of Object.entries(emitted)) {
    const s = (schema as Record<string, unknown>)[k];
    // resources.limits may carry any resource name
    if (path.endsWith(".resources.limits")) continue;
    assert.ok(k in (schema as object), `${path}.${k} is not in deploy/helm/switchyard/values.yaml`);
    assertFitsSchema(v, s, `${path}.${k}`);
  }
}

test(
  "--emit-values only sets keys the chart's values.yaml defines",
  { skip: !existsSync("deploy/helm/switchyard/values.yaml") },
  async () => {
    const scen = write("small2.yaml", SMALL);
    const values = join(dir, "values2.yaml");
    const r = await capture(() => plan(["--scenario", scen, "--no-sweep", "--emit-values", values]));
    assert.equal(r.code, 0);
    const chart = parse(readFileSync("deploy/helm/switchyard/values.yaml", "utf8"));
    assertFitsSchema(parse(readFileSync(values, "utf8")), chart, "values");
  },
);

test("plan --emit-values writes the pinned policy for every policy the router accepts", async () => {
  for (const policy of ROUTER_POLICY_NAMES) {
    const scen = write(
      `pinned-${policy}.yaml`,
      SMALL.replace("requests: 48", `requests: 48\n  policy: ${policy}`),
    );
    const values = join(dir, `pinned-${policy}.values.yaml`);
    const r = await capture(() =>
      plan(["--scenario", scen, "--no-sweep", "--format", "json", "--emit-values", values]),
    );
    assert.equal(r.code, 0, `${policy}: ${r.err}`);
    assert.equal(JSON.parse(r.out).router.policy, policy);
    const v = parse(readFileSync(values, "utf8"));
    assert.deepEqual(v.router, { policy });
    // the engines publish KV events exactly when the policy reads them
    assert.equal(v.engines.kvEvents.enabled, policyReadsKv(policy), policy);
  }
});

test("plan: no HBM monitoring → exit 2 with the reason", async () => {
  const scen = write("nohbm.yaml", SMALL.replace("hbm_monitoring: true", "hbm_monitoring: false"));
  const r = await capture(() => plan(["--scenario", scen]));
  assert.equal(r.code, 2);
  assert.match(r.err, /refuse\.plan\.no-hbm-monitoring.*first preemption will be a surprise/);
});

test("plan: invalid scenarios name the field and repeat the value (exit 2 via CliError)", async () => {
  const cases: [string, string, RegExp][] = [
    ["gpu: h100", "gpu: h800", /fleet\.gpu: unknown GPU "h800"/],
    [
      "model: meta-llama/Llama-3.1-8B-Instruct",
      "model: acme/Nope-7B",
      /fleet\.model: unknown model "acme\/Nope-7B"/,
    ],
    ["concurrency: 16", "concurrency: -3", /workload\.concurrency: .*got -3/],
    ["engines: 2", "engines: two", /fleet\.engines: .*got "two"/],
    ["prefix_reuse: multi-tenant", "prefix_reuse: sometimes", /workload\.prefix_reuse: .*got "sometimes"/],
    [
      "shared_prefix_tokens: 2000",
      "shared_prefix_tokens: 5000",
      /workload\.shared_prefix_tokens: must be below workload\.prompt_tokens \(3000\), got 5000/,
    ],
    [
      "prompt_tokens: 3000",
      "prompt_tokens: 300000",
      /workload\.prompt_tokens: 300000 prompt \+ 64 output tokens exceed the context/,
    ],
    ["  engines: 2", "  engines: 2\n  colour: blue", /fleet: unknown field colour/],
  ];
  for (const [from, to, re] of cases) {
    const scen = write("bad.yaml", SMALL.replace(from, to));
    await assert.rejects(
      () => plan(["--scenario", scen]),
      (e: unknown) => e instanceof CliError && re.test(e.message),
      `${to} → ${re}`,
    );
  }
  await assert.rejects(() => plan(["--scenario", join(dir, "missing.yaml")]), /cannot read/);
  await assert.rejects(
    () => plan(["--scenario", write("x.yaml", SMALL), "--format", "html"]),
    /--format: expected md or json/,
  );
});

test("plan --format md: one page with every section and the gate", async () => {
  const scen = write("md.yaml", SMALL);
  const r = await capture(() => plan(["--scenario", scen, "--no-sweep"]));
  assert.equal(r.code, 0);
  for (const h of [
    "## Stack",
    "## KV offload",
    "## HBM monitoring",
    "## Router integration",
    "## Observability",
    "## Expected impact",
    "## KV-spill report",
    "## The gate",
  ])
    assert.ok(r.out.includes(h), h);
  assert.match(r.out, /quantile_over_time\(0\.99/);
});

test("where the plan chooses LMCache it emits LMCache's multiprocess layout for vLLM 0.32 and the connector before it", async () => {
  // cross-engine reuse (4 tenants on 2 engines) and declared preemption: the LMCache rule fires
  const base = SMALL.replace("tenants: 4", "tenants: 4\n  preemption_heavy: true");
  for (const [version, layout] of [
    ["0.32.0", "mp"],
    ["0.28.0", "connector"],
  ] as const) {
    const scen = write(
      `lmcache-${version}.yaml`,
      base.replace("engines: 2", `engines: 2\n  vllm_version: "${version}"`),
    );
    const values = join(dir, `values-lmcache-${version}.yaml`);
    const r = await capture(() =>
      plan(["--scenario", scen, "--no-sweep", "--format", "json", "--emit-values", values]),
    );
    assert.equal(JSON.parse(r.out).kv_offload.choice, "lmcache", r.err);
    const v = parse(readFileSync(values, "utf8"));
    assert.equal(v.engines.offload.mode, "lmcache");
    assert.equal(v.engines.vllmImage.tag, `v${version}`);
    assert.equal(v.engines.offload.lmcache.layout, layout);
    if (layout === "mp") assert.deepEqual(v.engines.offload.lmcache.mp, { l1SizeGB: 20 });
    else assert.equal(v.engines.offload.lmcache.mp, undefined);
    // the shared tier fits one node: the cache server, as the MP servers' L2 or the connector's remote
    assert.deepEqual(v.engines.offload.l2, { type: "cache-server" });
    assert.equal(v.cacheServer.enabled, true);
  }
});
