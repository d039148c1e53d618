// The `trace` workload: a Mooncake-format trace's window replayed at its own times, equal hash ids giving
// equal token blocks on the engine's own tokenizer, live through `switchyard bench` and in the fleet
// simulator. The fixture is made here in Mooncake's format (test/fixtures/PROVENANCE.md).
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import {
  blockWords,
  parseTrace,
  scaledBlocks,
  traceWorkload,
  TRACE_DEFAULTS,
  type TraceOptions,
} from "../../src/workload/trace.js";
import { buildWorkload } from "../../src/workload/index.js";
import { runBench } from "../../src/bench/run.js";
import { toOptions, SPECS } from "../../src/bench/cli.js";
import { parseFlags } from "../../src/config/args.js";
import { resolveScenario, withTrace } from "../../src/fleet/scenario.js";
import { fleetOptionsFor } from "../../src/fleet/build.js";
import { simulateFleet } from "../../src/fleet/fleet.js";
import { VirtualTokenizer } from "../../src/fleet/tokens.js";
import { postJson, startTestSim } from "../sim/helpers.js";

const FIXTURE = fileURLToPath(
  new URL("../../../test/fixtures/traces/mooncake-format.jsonl", import.meta.url),
);
const text = () => readFileSync(FIXTURE, "utf8");
const opts = (o: Partial<TraceOptions> = {}): TraceOptions => ({ ...TRACE_DEFAULTS, seed: 1, ...o });

test("a window keeps the requests whose timestamps fall in it, with gaps divided by the speed", () => {
  const entries = parseTrace(text());
  assert.equal(entries.length, 8);
  const w = traceWorkload(entries, opts({ startS: 0.2, durationS: 2, speed: 2, blockTokens: 64 }));
  // 250, 900, 1500 and 2100 ms fall in [200, 2200)
  assert.equal(w.naturalRequests, 4);
  assert.deepEqual(w.arrivalGapsS, [0, 0.325, 0.3, 0.3]);
  const sessions = [...w.sessions];
  assert.deepEqual(
    sessions.map((s) => s.turns[0]!.tokens),
    // 1100 tokens over 3 blocks: 2 full (128) and 76 of 512 (10 of 64); 700: 64 + 188 of 512 (24)
    [64 + 64 + 10, 64 + 24, 64 * 3, 38],
  );
  assert.deepEqual(
    sessions.map((s) => s.turns[0]!.maxTokens),
    [12, 400, 8, 5],
  );
});

test("the output cap bounds max_tokens; a chat id becomes the session id", () => {
  const w = traceWorkload(parseTrace(text()), opts({ maxOutput: 16, blockTokens: 64 }));
  const s = [...w.sessions];
  assert.deepEqual(
    s.map((x) => x.turns[0]!.maxTokens),
    [16, 12, 16, 8, 5, 16, 16, 16],
  );
  assert.deepEqual(
    s.slice(5).map((x) => x.id),
    ["trace-5", "chat-41", "chat-42"],
  );
});

test("equal hash ids give equal token blocks; the first differing id starts differing tokens", () => {
  const w = traceWorkload(parseTrace(text()), opts({ blockTokens: 64 }));
  const tok = new VirtualTokenizer();
  const ids = [...w.sessions].map((s) => tok.encode(s.turns[0]!.text));
  const common = (a: readonly number[], b: readonly number[]) => {
    let i = 0;
    while (i < a.length && i < b.length && a[i] === b[i]) i++;
    return i;
  };
  // [0,1,2] and [0,1,3]: two blocks in common, then a different one
  assert.equal(common(ids[0]!, ids[1]!), 128);
  // [0,1,2] (partial last) and [0,1,2] full: the partial block is a prefix of the full one
  assert.equal(common(ids[0]!, ids[3]!), ids[0]!.length);
  assert.equal(ids[3]!.length, 192);
  // [0,4] and [5]: nothing in common
  assert.equal(common(ids[2]!, ids[4]!), 0);
  // another seed: other words, the same sharing
  const other = traceWorkload(parseTrace(text()), opts({ blockTokens: 64, seed: 2 }));
  const o = [...other.sessions].map((s) => tok.encode(s.turns[0]!.text));
  assert.notDeepEqual(o[0], ids[0]);
  assert.equal(common(o[0]!, o[1]!), 128);
  assert.deepEqual(blockWords(3, 10, 1), blockWords(3, 64, 1).slice(0, 10));
});

test("a bad line is refused with its line number and field", () => {
  assert.throws(
    () =>
      parseTrace(
        '{"timestamp": 0, "input_length": 10, "output_length": 1, "hash_ids": [0]}\n{"timestamp": -1}',
      ),
    /trace:2: timestamp/,
  );
  assert.throws(
    () => parseTrace('{"timestamp": 0, "input_length": 10, "output_length": 1, "hash_ids": []}'),
    /trace:1: hash_ids/,
  );
  assert.throws(() => parseTrace("not json"), /trace:1: not JSON/);
  assert.throws(() => traceWorkload([], opts({ speed: 0 })), /--trace-speed/);
  assert.equal(
    scaledBlocks(
      { timestampMs: 0, inputLength: 5000, outputLength: 1, hashIds: [1, 2], chatId: null },
      64,
    )[1],
    64,
  );
});

test("the engine's own tokenizer (the sim's /tokenize) sees every shared block at the same token positions", async () => {
  const sim = await startTestSim("meta-llama/Llama-3.1-8B-Instruct", ["--time-scale", "0.05"]);
  try {
    const w = traceWorkload(parseTrace(text()), opts({ blockTokens: 64 }));
    const s = [...w.sessions];
    const tokenize = async (prompt: string) =>
      ((await postJson(`${sim.url}/tokenize`, { prompt })).json as { tokens: number[] }).tokens;
    const [a, b, full, c] = await Promise.all([0, 1, 3, 5].map((i) => tokenize(s[i]!.turns[0]!.text)));
    const bos = a![0] === b![0] && a![0] === c![0] ? 1 : 0;
    // each block is its own 64 tokens, wherever it stands
    for (let k = 0; k < 3; k++) {
      const block = await tokenize(
        blockWords([0, 1, 2][k]!, 64, 1)
          .map((x) => " " + x)
          .join(""),
      );
      assert.deepEqual(full!.slice(bos + 64 * k, bos + 64 * (k + 1)), block.slice(block.length - 64));
      assert.deepEqual(c!.slice(bos + 64 * k, bos + 64 * (k + 1)), block.slice(block.length - 64));
    }
    assert.equal(full!.length - bos, 192);
    assert.deepEqual(a!.slice(0, bos + 128), b!.slice(0, bos + 128));
    assert.notDeepEqual(a!.slice(bos + 128, bos + 129), b!.slice(bos + 128, bos + 129));
  } finally {
    await sim.close();
  }
});

test("switchyard bench --workload trace replays every request of the window through an OpenAI endpoint", async () => {
  const sim = await startTestSim("meta-llama/Llama-3.1-8B-Instruct", ["--time-scale", "0.05"]);
  try {
    const { flags } = parseFlags(
      [
        "--base-url",
        sim.url,
        "--workload",
        "trace",
        "--trace-file",
        FIXTURE,
        "--trace-start",
        "0",
        "--trace-duration",
        "3.2",
        "--trace-speed",
        "4",
        "--trace-block-tokens",
        "64",
        "--trace-max-output",
        "8",
        "--no-progress",
      ],
      SPECS,
    );
    const [run] = await runBench(toOptions(flags), { warn: () => {} });
    const r = run!.result;
    // 0 to 3000 ms: six requests, at a quarter of their gaps
    assert.equal(r.completed, 6, JSON.stringify(r.errors));
    assert.equal(r.workload, "trace");
    assert.ok(typeof r.request_rate === "number" && r.request_rate > 0);
    for (const k of ["output_throughput", "median_ttft_ms", "p90_ttft_ms"])
      assert.equal(typeof r[k], "number", k);
    assert.deepEqual(
      run!.records.map((x) => x.outputTokens),
      [8, 8, 8, 8, 5, 8],
    );
    const starts = run!.records.map((x) => x.start);
    // sends keep the trace's order and never run ahead of its times
    for (let i = 1; i < starts.length; i++) assert.ok(starts[i]! >= starts[i - 1]!);
    assert.ok(starts[5]! >= 3000 / 4 - 5, `the last request left at ${starts[5]} ms`);
  } finally {
    await sim.close();
  }
});

test("a fleet scenario replays the same window in virtual time, each request at its timestamp", () => {
  const r = withTrace(
    resolveScenario({
      workload: { prompt_tokens: 200, output_tokens: 16 },
      fleet: { model: "meta-llama/Llama-3.1-8B-Instruct", gpu: "l4", engines: 2, max_model_len: 4096 },
      ops: { kubernetes: true, hbm_monitoring: true },
      simulation: {
        policy: "round-robin",
        generator: {
          name: "trace",
          trace_file: "fixture.jsonl",
          trace_block_tokens: 64,
          trace_max_output: 8,
          trace_speed: 2,
        },
      },
    }),
    () => text(),
  );
  const o = fleetOptionsFor(r, "none");
  const res = simulateFleet(o);
  assert.equal(res.records.length, 8);
  const starts = res.records.sort((a, b) => a.index - b.index).map((x) => x.start);
  assert.deepEqual(
    starts.map((s) => Math.round(s)),
    [0, 250, 900, 1500, 2100, 3000, 3400, 4200].map((t) => t / 2),
  );
  // the same prompts as the live bench builds from the same seed
  const live = buildWorkload(
    "trace",
    { traceFile: "f", traceBlockTokens: 64, traceMaxOutput: 8, traceSpeed: 2 },
    0,
    0,
    { tokensPerWord: 1 },
    () => text(),
  ).workload;
  assert.deepEqual(
    [...live.sessions].map((s) => s.turns[0]!.text),
    [...o.workload.sessions].map((s) => s.turns[0]!.text),
  );
  assert.throws(
    () =>
      resolveScenario({
        workload: { prompt_tokens: 200, output_tokens: 16 },
        fleet: { model: "meta-llama/Llama-3.1-8B-Instruct", gpu: "l4", engines: 2 },
        ops: { kubernetes: true, hbm_monitoring: true },
        simulation: { generator: { name: "trace" } },
      }),
    /trace_file/,
  );
});
