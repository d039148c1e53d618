// The shared tier's store in a plan (src/planner/l2.ts): the single cache server while the working set
// with headroom fits one node and no HA is asked, a Valkey Cluster sized in shards and memory per shard
// otherwise, simulated as one shared tier of the cluster's total size and emitted as the chart's
// engines.offload.l2 values.
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { parse } from "yaml";
import { fleetOptionsFor } from "../../src/fleet/build.js";
import { parseScenarioText } from "../../src/fleet/scenario.js";
import { main as plan } from "../../src/planner/cli.js";
import { planL2, withL2 } from "../../src/planner/l2.js";

const dir = mkdtempSync(join(tmpdir(), "plan-l2-test-"));
test.after(() => rmSync(dir, { recursive: true, force: true }));

/** Llama 3.1 8B (128 KiB of KV per token), tenants × 4000 shared prefix tokens each */
const scenario = (tenants: number, shared: string) => `
name: l2-${tenants}
workload:
  prompt_tokens: 4500
  output_tokens: 32
  concurrency: 16
  shared_prefix_tokens: 4000
  prefix_reuse: multi-tenant
  tenants: ${tenants}
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
  requests: 32
  offload:
    mode: none
    shared_server: ${shared}
`;

test("a working set within one node's memory keeps the single cache server at the scenario's size", () => {
  const r = parseScenarioText(scenario(4, "{size_gib: 4}"));
  const l2 = planL2(r)!;
  assert.equal(l2.choice, "cache-server");
  assert.equal(l2.rule, "l2.cache-server.fits-one-node");
  // 4 tenants × 4000 tokens × 128 KiB = 1.95 GiB; with 25% headroom 3 GiB, below the scenario's 4
  assert.equal(l2.working_set_gib, 2);
  assert.equal(l2.needed_gib, 4);
  assert.equal(l2.size_gib, 4);
  assert.equal(l2.cluster, null);
  assert.equal(withL2(r, l2), r, "the simulated tier is the scenario's own");
});

test("a working set beyond one node's memory names a Valkey Cluster: shards, memory per shard, a replica each", () => {
  // 1000 tenants × 4000 tokens × 128 KiB = 488.3 GiB; × 1.25 = 611 GiB > 256 GiB on one node
  const l2 = planL2(parseScenarioText(scenario(1000, "{size_gib: 64}")))!;
  assert.equal(l2.choice, "cluster");
  assert.equal(l2.rule, "l2.cluster.exceeds-one-node");
  assert.equal(l2.working_set_gib, 488.3);
  assert.equal(l2.needed_gib, 611);
  assert.deepEqual(l2.cluster, { shards: 3, replicas_per_shard: 1, memory_per_shard_gib: 204, nodes: 6 });
  assert.equal(l2.size_gib, 612);
  // smaller nodes: more shards, none above a node's memory
  const small = planL2(parseScenarioText(scenario(1000, "{size_gib: 64, node_memory_gib: 100}")))!;
  assert.deepEqual(small.cluster, { shards: 7, replicas_per_shard: 1, memory_per_shard_gib: 88, nodes: 14 });
});

test("an HA requirement names a cluster even for a small working set; the scenario's working set overrides the estimate", () => {
  const ha = planL2(parseScenarioText(scenario(4, "{size_gib: 4, ha: true}")))!;
  assert.equal(ha.choice, "cluster");
  assert.equal(ha.rule, "l2.cluster.ha");
  assert.deepEqual(ha.cluster, { shards: 3, replicas_per_shard: 1, memory_per_shard_gib: 2, nodes: 6 });
  const given = planL2(parseScenarioText(scenario(4, "{size_gib: 4, working_set_gib: 900}")))!;
  assert.equal(given.working_set_source, "offload.shared_server.working_set_gib");
  assert.equal(given.needed_gib, 1125);
  assert.deepEqual(given.cluster, { shards: 5, replicas_per_shard: 1, memory_per_shard_gib: 225, nodes: 10 });
  assert.equal(planL2(parseScenarioText(scenario(4, "null"))), null, "no shared tier, no L2");
});

test("the fleet simulator models the cluster as one shared tier of its total size, read by every engine, and predictive credits no engine with it", () => {
  const r = parseScenarioText(
    scenario(1000, "{size_gib: 64, engines_per_server: 1}").replace(
      "simulation:\n",
      "simulation:\n  tier_aware: true\n",
    ),
  );
  assert.equal(r.scenario.simulation.tier_aware, true);
  const l2 = planL2(r)!;
  const o = fleetOptionsFor(withL2(r, l2), "lmcache");
  assert.equal(o.sharedServer!.bytes, 612 * 1024 ** 3);
  assert.equal(o.sharedServer!.enginesPerServer, undefined, "one tier for all engines, not one per node");
  // no tier index: the simulated router, like the real one, is blind to a tier every engine reads
  assert.equal(o.tierAware, false);
  assert.equal(fleetOptionsFor(r, "lmcache").sharedServer!.bytes, 64 * 1024 ** 3);
});

test("plan names the cluster and its size in Markdown and JSON; with LMCache chosen its values run the chart's cluster", async () => {
  const scen = join(dir, "big.yaml");
  writeFileSync(scen, scenario(1000, "{size_gib: 64}"));
  const values = join(dir, "values.yaml");
  const run = async (args: string[]) => {
    const out: string[] = [];
    const log = console.log;
    console.log = (...a: unknown[]) => void out.push(a.join(" "));
    try {
      return { code: await plan(args), out: out.join("\n") };
    } finally {
      console.log = log;
    }
  };
  const md = await run(["--scenario", scen, "--no-sweep"]);
  assert.equal(md.code, 0);
  assert.match(md.out, /### Shared tier \(LMCache's L2\)/);
  assert.match(md.out, /\*\*cluster\*\* — `l2\.cluster\.exceeds-one-node`/);
  assert.match(
    md.out,
    /a Valkey Cluster of 3 primaries × 204 GiB, each with a replica \(6 nodes, 612 GiB shared\)/,
  );
  const js = await run(["--scenario", scen, "--no-sweep", "--format", "json", "--emit-values", values]);
  const p = JSON.parse(js.out);
  assert.equal(p.kv_l2.choice, "cluster");
  assert.equal(p.kv_l2.size_gib, 612);
  const v = parse(readFileSync(values, "utf8"));
  if (p.kv_offload.choice === "lmcache") {
    assert.deepEqual(v.engines.offload.l2, {
      type: "cluster",
      cluster: { shards: 3, replicasPerShard: 1, maxMemoryGB: 204 },
    });
    assert.equal(v.cacheServer.enabled, false);
  } else assert.deepEqual(v.engines.offload.l2, { type: "none" });
});
