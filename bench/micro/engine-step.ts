// Engine hot-path benchmark: CPU cost of scheduling + completing one decode step with N running
// sequences (default 2000), Llama-3.1-8B on an H100 profile. Usage: node dist/bench/micro/engine-step.js [N] [steps]
import { Engine } from "../../src/engine/engine.js";
import { defaultEngineConfig } from "../../src/engine/config.js";
import { resolveGpu, resolveModel } from "../../src/models/profiles.js";
import type { EngineRequest } from "../../src/engine/types.js";

const numSeqs = Number(process.argv[2] ?? 2000);
const steps = Number(process.argv[3] ?? 2000);

const cfg = defaultEngineConfig(resolveModel("meta-llama/Llama-3.1-8B"), resolveGpu("h100"), {
  maxNumSeqs: Math.max(numSeqs, 1024),
  maxNumBatchedTokens: Math.max(8192, numSeqs),
  maxModelLen: 8192,
  // enough blocks that all N sequences keep decoding (no preemption churn in the measurement)
  numGpuBlocksOverride: numSeqs * Math.ceil((64 + steps + 300) / 16) + 16,
});
let tokensOut = 0;
const engine = new Engine(cfg, {
  onTokens: () => {
    tokensOut++;
  },
  onFinished: () => {},
  onKvEvents: () => {},
});
const sample = (i: number) => 1000 + (i % 5000);
for (let i = 0; i < numSeqs; i++) {
  const prompt = Array.from({ length: 64 }, (_, j) => (i * 131 + j * 7) % 128000);
  const req: EngineRequest = {
    requestId: `r${i}`,
    promptTokenIds: prompt,
    maxTokens: steps + 200,
    stopAfter: 1e9,
    ignoreEos: true,
    minTokens: 0,
    priority: 0,
    cacheSalt: null,
    loraName: null,
    arrivalTime: 0,
    sampleToken: sample,
  };
  engine.add(req);
}
let now = 0;
// warm up: prefill everything until every sequence is decoding
while (engine.snapshot().numWaiting > 0 || now === 0) {
  const p = engine.beginStep(now)!;
  now += p.duration;
  engine.completeStep(now);
}
for (let i = 0; i < 50; i++) {
  const p = engine.beginStep(now)!;
  now += p.duration;
  engine.completeStep(now);
}
tokensOut = 0;
const t0 = process.hrtime.bigint();
let decodeSeqs = 0;
for (let i = 0; i < steps; i++) {
  const p = engine.beginStep(now)!;
  decodeSeqs += p.decodeSeqs;
  now += p.duration;
  engine.completeStep(now);
}
const secs = Number(process.hrtime.bigint() - t0) / 1e9;
const perStep = (secs / steps) * 1000;
console.log(
  JSON.stringify({
    bench: "engine-step",
    runningSeqs: numSeqs,
    steps,
    avgDecodeSeqs: decodeSeqs / steps,
    cpuMsPerStep: Number(perStep.toFixed(4)),
    stepsPerSecond: Math.round(steps / secs),
    tokensPerSecondOfCpu: Math.round(tokensOut / secs),
    modelledStepMs: Number(((now / (engine.snapshot().counters.steps || 1)) * 1000).toFixed(3)),
  }),
);
