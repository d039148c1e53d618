// The tiers as the fleet's router reads them: the shared cache server's tier index
// (`simulation.tier_aware`), what the server holds of a prompt beyond an engine's GPU hit, and each
// engine's own CPU tier, each priced at its load time from bytes and the link's bandwidth, not a fixed
// credit.
import assert from "node:assert/strict";
import { test } from "node:test";
import { EngineProbeOracle } from "../../src/fleet/oracle.js";
import { chunkKeys } from "../../src/fleet/tokens.js";
import { SharedCacheServer, cacheServersFor } from "../../src/fleet/remote.js";
import { resolveModel } from "../../src/models/index.js";
import { resolveScenario } from "../../src/fleet/scenario.js";
import { fleetOptionsFor } from "../../src/fleet/build.js";
import { simulateFleet } from "../../src/fleet/fleet.js";
import { Engine } from "../../src/engine/engine.js";
import { config, makeEngine, request, runToIdle, tokens } from "../engine/helpers.js";

const llama = resolveModel("meta-llama/Llama-3.1-8B-Instruct");

test("the tier index gives each engine what the shared server holds beyond its GPU hit, at bytes over bandwidth", () => {
  const server = new SharedCacheServer({ bytes: 2 ** 34, bandwidth: 12.5e9, chunkTokens: 256 }, llama);
  const prompt = Array.from({ length: 1100 }, (_, i) => 1000 + (i % 300));
  // the server holds the first three chunks (768 tokens)
  server.store.put(chunkKeys(prompt, 256), 0, 3);
  const engine = new Engine(config(), { onTokens: () => {}, onFinished: () => {} });
  const oracle = new EngineProbeOracle([engine], ["e0"], [server]);
  oracle.current = { tokens: prompt };
  const p = oracle.predict({ model: "m", seq: 0, prompt: "x" }, [{ id: "e0" } as never]);
  assert.equal(p.cachedTokens[0], 0);
  assert.equal(p.tierTokens![0], 768);
  const bytesPerToken = 2 * llama.layers * llama.kvHeads * llama.headDim * llama.dtypeBytes;
  assert.ok(Math.abs(p.tierLoadSeconds![0]! - (768 * bytesPerToken) / 12.5e9) < 1e-9);
  // looking is not using: the server's counters and recency stay as they were
  assert.equal(server.stats().lookups, 0);
  // a blind router's oracle knows no tier
  const blind = new EngineProbeOracle([engine], ["e0"]);
  blind.current = { tokens: prompt };
  assert.equal(
    blind.predict({ model: "m", seq: 0, prompt: "x" }, [{ id: "e0" } as never]).tierTokens,
    undefined,
  );
});

test("with a cache server per node, an engine is priced by what its own node's server holds, not another's", () => {
  const opts = { bytes: 2 ** 34, bandwidth: 12.5e9, chunkTokens: 256, enginesPerServer: 2 };
  const servers = cacheServersFor(opts, llama, 4);
  // engines 0 and 1 share one server, 2 and 3 the other
  assert.equal(servers[0], servers[1]);
  assert.equal(servers[2], servers[3]);
  assert.notEqual(servers[0], servers[2]);
  const prompt = Array.from({ length: 1100 }, (_, i) => 1000 + (i % 300));
  servers[0]!.store.put(chunkKeys(prompt, 256), 0, 3);
  const list = [0, 1, 2, 3].map(() => new Engine(config(), { onTokens: () => {}, onFinished: () => {} }));
  const ids = ["e0", "e1", "e2", "e3"];
  const oracle = new EngineProbeOracle(list, ids, servers);
  oracle.current = { tokens: prompt };
  const p = oracle.predict(
    { model: "m", seq: 0, prompt: "x" },
    ids.map((id) => ({ id }) as never),
  );
  assert.deepEqual(Array.from(p.tierTokens!), [768, 768, 0, 0]);
  assert.equal(p.tierLoadSeconds![2], 0);
});

/** a tiered shared-prefix scenario on L4 engines sharing one cache server (or one per node) */
function tieredScenario(o: {
  engines: number;
  policy: string;
  requests: number;
  groups: number;
  tierAware?: boolean;
  enginesPerServer?: number;
}) {
  return resolveScenario({
    workload: { prompt_tokens: 3600, output_tokens: 16, qps: 4 },
    fleet: { model: "meta-llama/Llama-3.1-8B-Instruct", gpu: "l4", engines: o.engines, max_model_len: 16384 },
    ops: { kubernetes: true, hbm_monitoring: true },
    simulation: {
      policy: o.policy,
      seed: 1,
      requests: o.requests,
      tier_aware: o.tierAware ?? false,
      offload: {
        mode: "lmcache",
        lmcache_local_cpu_gib: 0.25,
        shared_server: { size_gib: 16, bandwidth_gbps: 100, engines_per_server: o.enginesPerServer },
      },
      generator: {
        name: "shared-prefix",
        num_groups: o.groups,
        prompts_per_group: o.requests / o.groups,
        system_prompt_len: 3000,
        question_len: 600,
        output_len: 16,
      },
    },
  });
}

test("a scenario's engines_per_server gives each node its own server, and the fleet's counters sum them", () => {
  const run = (enginesPerServer: number | undefined) =>
    simulateFleet(
      fleetOptionsFor(
        tieredScenario({ engines: 4, policy: "round-robin", requests: 48, groups: 4, enginesPerServer }),
        "lmcache",
      ),
    );
  const one = run(undefined);
  const perNode = run(2);
  assert.equal(perNode.records.length, 48);
  // round-robin puts a group's prompts on every engine: with one server each group's prefix is stored
  // once, with two servers once per server, and found on half as many engines
  assert.ok(perNode.remote!.storedChunks > one.remote!.storedChunks);
  assert.ok(perNode.remote!.hitTokens < one.remote!.hitTokens);
});

test("a scenario's tier_aware router decides with the tier index; without it, as before", () => {
  const scen = (tierAware: boolean) =>
    tieredScenario({ engines: 3, policy: "predictive", requests: 90, groups: 15, tierAware });
  const blind = simulateFleet(fleetOptionsFor(scen(false), "lmcache"));
  const aware = simulateFleet(fleetOptionsFor(scen(true), "lmcache"));
  assert.equal(aware.records.length, 90);
  assert.notDeepEqual(aware.routedTo, blind.routedTo);
});

test("the fleet's router prices an engine's own CPU tier at its load time over the host link, as much as the engine then loads", () => {
  const { engine, driver, rec } = makeEngine({
    numGpuBlocksOverride: 16,
    offload: { backend: "native", bytes: 64 * 2 ** 21 },
  });
  const prompt = tokens(160);
  engine.add(request("a", prompt, { maxTokens: 1 }));
  runToIdle(engine, driver);
  // another prompt takes every GPU block: a's blocks are on the CPU tier only
  engine.add(request("o", tokens(250, 2), { maxTokens: 1 }));
  runToIdle(engine, driver);
  const oracle = new EngineProbeOracle([engine], ["e0"]);
  oracle.current = { tokens: prompt };
  const p = oracle.predict({ model: "m", seq: 0, prompt: "x" }, [{ id: "e0" } as never]);
  const gpu = p.cachedTokens[0]!;
  const cpu = p.tierTokens![0]!;
  assert.ok(cpu > 0, `CPU tier ${cpu}`);
  // the 9 whole blocks below the last token, between the GPU and the CPU tier
  assert.equal(gpu + cpu, 144);
  const seconds = ((cpu / 16) * engine.capacity.blockBytesPerGpu) / engine.config.gpu.hostLinkBandwidth;
  assert.ok(Math.abs(p.tierLoadSeconds![0]! - seconds) < 1e-12);
  // the same prompt again finds that much cached: the price reads the tier the engine loads from
  engine.add(request("a2", prompt, { maxTokens: 1 }));
  runToIdle(engine, driver);
  assert.equal(rec.finished.get("a2")!.timings.cachedTokens, gpu + cpu);
});
