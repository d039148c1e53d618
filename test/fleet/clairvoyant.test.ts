// The clairvoyant reference placement (src/fleet/clairvoyant.ts): it reads every engine's exact cache
// and queues, predicts the TTFT the engine model then gives, and sends each request where it is lowest.
import { test } from "node:test";
import assert from "node:assert/strict";
import { resolveScenario } from "../../src/fleet/scenario.js";
import { fleetOptionsFor } from "../../src/fleet/build.js";
import { simulateFleet } from "../../src/fleet/fleet.js";
import { ClairvoyantPlacer } from "../../src/fleet/clairvoyant.js";
import { SharedCacheServer } from "../../src/fleet/remote.js";
import { chunkKeys } from "../../src/fleet/tokens.js";
import { defaultEngineConfig, Engine, VirtualDriver } from "../../src/engine/index.js";
import { resolveGpu, resolveModel } from "../../src/models/index.js";

const scenario = (policy: string, sim: object = {}) =>
  resolveScenario({
    workload: { prompt_tokens: 2600, output_tokens: 16, qps: 3 },
    fleet: { model: "meta-llama/Llama-3.1-8B-Instruct", gpu: "l4", engines: 3, max_model_len: 8192 },
    ops: { kubernetes: true, hbm_monitoring: true },
    simulation: {
      policy,
      seed: 2,
      requests: 60,
      generator: {
        name: "shared-prefix",
        num_groups: 6,
        prompts_per_group: 10,
        system_prompt_len: 2000,
        question_len: 600,
        output_len: 16,
      },
      ...sim,
    },
  });

function engines(n: number) {
  const cfg = {
    ...defaultEngineConfig(resolveModel("meta-llama/Llama-3.1-8B-Instruct"), resolveGpu("l4"), {
      maxModelLen: 8192,
    }),
    blockHashAlgo: "fast" as const,
  };
  const driver = new VirtualDriver();
  const first: number[] = [];
  const list = Array.from({ length: n }, () => {
    const e: Engine = new Engine(cfg, {
      onTokens: (_rid, _ids, time) => {
        if (first.length === 0) first.push(time);
      },
      onFinished: () => {},
    });
    driver.attach(e);
    return e;
  });
  return { list, driver, first };
}

const request = (id: string, prompt: number[], now: number) => ({
  requestId: id,
  promptTokenIds: prompt,
  maxTokens: 8,
  stopAfter: 8,
  ignoreEos: true,
  minTokens: 0,
  priority: 0,
  cacheSalt: null,
  loraName: null,
  arrivalTime: now,
  sampleToken: () => 1000,
});

test("on an idle engine the predicted time to first token is the engine model's own", () => {
  const { list, driver, first } = engines(1);
  const prompt = Array.from({ length: 3000 }, (_, i) => 1000 + (i % 500));
  const predicted = new ClairvoyantPlacer(list).ttftSeconds(0, prompt, 8);
  list[0]!.add(request("a", prompt, 0));
  driver.wake(list[0]!);
  driver.run();
  assert.ok(
    Math.abs(first[0]! - predicted) <= predicted * 0.01,
    `engine ${first[0]} s, predicted ${predicted} s`,
  );
});

test("a prefix the shared cache server holds is predicted loaded, not computed, as the engine then gives it", () => {
  const model = resolveModel("meta-llama/Llama-3.1-8B-Instruct");
  const shared = new SharedCacheServer({ bytes: 2 ** 30, bandwidth: 1.25e9, chunkTokens: 256 }, model);
  const prompt = Array.from({ length: 3000 }, (_, i) => 1000 + (i % 500));
  const keys = chunkKeys(prompt, 256);
  shared.store.put(keys, 0, keys.length);
  const held = shared.held(prompt);
  assert.equal(held, 2816);
  const { list, driver, first } = engines(1);
  const blind = new ClairvoyantPlacer(list).ttftSeconds(0, prompt, 8);
  const predicted = new ClairvoyantPlacer(list, [shared]).ttftSeconds(0, prompt, 8);
  assert.ok(predicted < blind, `with the server ${predicted} s, without ${blind} s`);
  list[0]!.add({ ...request("a", prompt, 0), externalCachedTokens: held, externalLoadBandwidth: 1.25e9 });
  driver.wake(list[0]!);
  driver.run();
  assert.ok(
    Math.abs(first[0]! - predicted) <= predicted * 0.01,
    `engine ${first[0]} s, predicted ${predicted} s`,
  );
});

test("a prompt goes where its prefix is cached when the engines are otherwise alike, and away from a long queue", () => {
  const { list, driver } = engines(2);
  const prefix = Array.from({ length: 2048 }, (_, i) => 2000 + (i % 700));
  list[1]!.add(request("warm", prefix.concat([7, 8, 9]), 0));
  driver.wake(list[1]!);
  driver.run();
  const p = new ClairvoyantPlacer(list);
  assert.equal(p.place(prefix.concat([1, 2, 3]), 8), 1);
  // engine 1 now queues long prompts: the cached prefix no longer pays for the wait
  for (let i = 0; i < 6; i++)
    list[1]!.add(
      request(
        `q${i}`,
        Array.from({ length: 7000 }, (_, j) => 30000 + i * 7000 + j),
        driver.now,
      ),
    );
  assert.equal(p.place(prefix.concat([1, 2, 3]), 8), 0);
});

test("a scenario names the clairvoyant reference as its policy; its TTFT is no worse than round-robin's", () => {
  const rr = simulateFleet(fleetOptionsFor(scenario("round-robin"), "none"));
  const cv = simulateFleet(fleetOptionsFor(scenario("clairvoyant"), "none"));
  assert.equal(cv.records.length, 60);
  const mean = (r: typeof rr) => r.records.reduce((a, x) => a + x.ttft, 0) / r.records.length;
  assert.ok(mean(cv) <= mean(rr), `clairvoyant ${mean(cv)} ms, round-robin ${mean(rr)} ms`);
});
