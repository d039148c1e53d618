// The fleet simulator: determinism, the router's stale view, offload effects under KV pressure, the
// shared LMCache server, and `switchyard simulate`'s output.
import { test } from "node:test";
import assert from "node:assert/strict";
import { resolveScenario, type ResolvedScenario } from "../../src/fleet/scenario.js";
import { runScenario } from "../../src/fleet/run.js";
import { fleetOptionsFor } from "../../src/fleet/build.js";
import { simulateFleet } from "../../src/fleet/fleet.js";
import { main as simulate } from "../../src/fleet/cli.js";
import { chunkKeys, VirtualTokenizer } from "../../src/fleet/tokens.js";

function scen(sim: object = {}, fleet: object = {}, workload: object = {}): ResolvedScenario {
  return resolveScenario({
    workload: {
      prompt_tokens: 2300,
      output_tokens: 32,
      concurrency: 12,
      shared_prefix_tokens: 2048,
      prefix_reuse: "multi-tenant",
      tenants: 6,
      ...workload,
    },
    fleet: {
      model: "meta-llama/Llama-3.1-8B-Instruct",
      gpu: "h100",
      engines: 3,
      max_model_len: 4096,
      num_gpu_blocks_override: 420,
      ...fleet,
    },
    ops: { kubernetes: true, hbm_monitoring: true },
    simulation: { requests: 90, seed: 3, ...sim },
  });
}

test("determinism: the same scenario and seed give identical runs; another seed differs", () => {
  const a = simulateFleet(fleetOptionsFor(scen(), "native"));
  const b = simulateFleet(fleetOptionsFor(scen(), "native"));
  assert.deepEqual(a.records, b.records);
  assert.deepEqual(Array.from(a.kvSamples), Array.from(b.kvSamples));
  const c = simulateFleet(fleetOptionsFor(scen({ seed: 4 }), "native"));
  assert.notDeepEqual(
    c.records.map((r) => r.ttft),
    a.records.map((r) => r.ttft),
  );
});

test("offload under KV pressure: evicted prefixes load from CPU, fewer tokens recomputed, more throughput", () => {
  // 6 tenants × 2048 shared tokens over 3 engines of 420 blocks (6,720 tokens): prefixes spill
  const none = runScenario(scen(), "none");
  const native = runScenario(scen(), "native");
  const lm = runScenario(scen(), "lmcache");
  assert.equal(none.reprefill_avoided_tokens, 0);
  assert.ok(native.reprefill_avoided_tokens > 0 && lm.reprefill_avoided_tokens > 0);
  assert.ok(native.hit_rates.cpu > 0 && lm.hit_rates.cpu > 0);
  const thr = (r: typeof none) => r.bench.total_token_throughput as number;
  assert.ok(thr(native) > thr(none), `${thr(native)} vs ${thr(none)}`);
  assert.ok(thr(lm) > thr(none), `${thr(lm)} vs ${thr(none)}`);
  // when KV fits (10× the blocks) offload changes little
  const roomy = (m: "none" | "native") => thr(runScenario(scen({}, { num_gpu_blocks_override: 4200 }), m));
  const g = roomy("native") / roomy("none") - 1;
  assert.ok(Math.abs(g) < 0.02, `gain when KV fits: ${g}`);
  // bench metric names are vllm bench's
  for (const k of [
    "request_throughput",
    "output_throughput",
    "mean_ttft_ms",
    "p99_ttft_ms",
    "mean_itl_ms",
    "median_tpot_ms",
  ])
    assert.ok(k in none.bench, k);
  assert.ok(none.kv_usage.p99 >= none.kv_usage.p50 && none.kv_usage.p99 <= 1);
});

test("shared LMCache server: a prefix computed on one engine is loaded by another", () => {
  const sim = {
    policy: "round-robin",
    offload: {
      mode: "lmcache",
      lmcache_local_cpu_gib: 0.001,
      shared_server: { size_gib: 8, bandwidth_gbps: 100 },
    },
  };
  const rep = runScenario(scen(sim), "lmcache");
  assert.ok(rep.remote !== null && rep.remote.storedChunks > 0);
  assert.ok(rep.hit_rates.remote > 0, JSON.stringify(rep.hit_rates));
  const without = runScenario(
    scen({ ...sim, offload: { mode: "lmcache", lmcache_local_cpu_gib: 0.001 } }),
    "lmcache",
  );
  assert.equal(without.hit_rates.remote, 0);
  assert.equal(without.remote, null);
});

test("the router sees engine load as of its last scrape", () => {
  // with a huge scrape interval the least-load policy sees only its own in-flight counts
  const o = fleetOptionsFor(scen({ policy: "least-load", scrape_interval_ms: 1e9 }), "none");
  const r = simulateFleet(o);
  // the scrape at t=0 and the one already scheduled when the load ends: nothing in between
  assert.equal(r.kvSamples.length, 6);
  assert.ok(r.records.length === 90);
  const fresh = simulateFleet(
    fleetOptionsFor(scen({ policy: "least-load", scrape_interval_ms: 100 }), "none"),
  );
  assert.ok(fresh.kvSamples.length > 30);
});

test("virtual tokenizer and chunk keys keep shared prefixes shared", () => {
  const t = new VirtualTokenizer();
  const a = t.encode("the of and to in is was ".repeat(100) + "apple");
  const b = t.encode("the of and to in is was ".repeat(100) + "orange");
  assert.equal(a.length, 701);
  const ka = chunkKeys(a, 256);
  const kb = chunkKeys(b, 256);
  assert.equal(ka.length, 2);
  assert.deepEqual(ka, kb, "the first 512 tokens are the same");
  assert.notDeepEqual(chunkKeys([...a.slice(0, 255), 7, ...a.slice(256)], 256)[1], ka[1], "keys chain");
});

test("switchyard simulate --format json prints the report", async () => {
  const { writeFileSync, mkdtempSync, rmSync } = await import("node:fs");
  const { join } = await import("node:path");
  const { tmpdir } = await import("node:os");
  const dir = mkdtempSync(join(tmpdir(), "sim-"));
  try {
    const p = join(dir, "s.yaml");
    writeFileSync(
      p,
      "workload: {prompt_tokens: 1500, output_tokens: 16, concurrency: 4}\nfleet: {model: meta-llama/Llama-3.1-8B-Instruct, gpu: h100, engines: 2}\nops: {kubernetes: true, hbm_monitoring: true}\nsimulation: {requests: 12}\n",
    );
    const out: string[] = [];
    const log = console.log;
    console.log = (s: string) => void out.push(s);
    let code: number;
    try {
      code = await simulate(["--scenario", p, "--format", "json", "--offload", "native"]);
    } finally {
      console.log = log;
    }
    assert.equal(code, 0);
    const rep = JSON.parse(out.join("\n"));
    assert.equal(rep.offload, "native");
    assert.equal(rep.requests, 12);
    assert.equal(rep.bench.completed, 12);
    await assert.rejects(
      () => simulate(["--scenario", p, "--offload", "disk"]),
      /--offload: expected none, native or lmcache, got 'disk'/,
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("a scenario can name the agentic and conversation-replay presets: the simulator replays their sessions, and refuses a preset its engines' context cannot hold", () => {
  const long = { max_model_len: 131_072, num_gpu_blocks_override: 20_000 };
  const agentic = scen(
    { generator: { name: "agentic", preset: "b2b", sessions: 6 }, requests: undefined },
    long,
  );
  const a = simulateFleet(fleetOptionsFor(agentic, "none"));
  const sessions = new Set(a.records.map((r) => r.sessionId));
  assert.equal(sessions.size, 6);
  // with no simulation.requests every turn of the preset runs, none cut at a count
  const natural = fleetOptionsFor(agentic, "none").workload.naturalRequests!;
  assert.ok(natural > 6);
  assert.equal(a.records.length, natural);
  // every turn after a session's first resends its context: prompts grow turn by turn
  const first = a.records.filter((r) => r.round === 0).map((r) => r.promptTokens);
  assert.ok(
    first.every((p) => p >= 5_000 && p < 6_000),
    `${first}`,
  );
  assert.ok(a.records.some((r) => r.round > 0 && r.promptTokens > 6_000));
  const replay = scen(
    { generator: { name: "conversation-replay", conversations: 2 }, requests: undefined },
    long,
  );
  const b = simulateFleet(fleetOptionsFor(replay, "none"));
  assert.equal(new Set(b.records.map((r) => r.sessionId)).size, 2);
  assert.ok(b.records.every((r) => r.ok && r.promptTokens >= 3_000));
  // the default context of the scenario above (4,096) cannot hold either preset's prompts
  assert.throws(
    () => scen({ generator: { name: "conversation-replay" } }),
    /preset: conversation-replay llm-d-code-gen sends prompts and answers of up to 131000 tokens, above the context of meta-llama\/Llama-3.1-8B-Instruct \(4096\)/,
  );
  assert.throws(
    () => scen({ generator: { name: "agentic", preset: "chat" } }, long),
    /preset: expected one of code-gen, b2b, fan-out, got "chat"/,
  );
  assert.throws(
    () => scen({ generator: { name: "agentic", preset: "constructor" } }, long),
    /preset: expected one of code-gen, b2b, fan-out, got "constructor"/,
  );
  assert.throws(
    () => scen({ generator: { name: "random", sessions: 4 } }, long),
    /sessions: for agentic only/,
  );
});
