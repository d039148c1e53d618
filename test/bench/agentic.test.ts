// `switchyard bench --workload agentic`: the live load generator drives agent sessions (turns in order,
// each later turn after its tool pause, sub-agents in parallel with their parent's context), sends each
// session's x-session-id, and reports resumed-turn TTFT beside the usual metrics. Tiny presets, bounded
// runs; no timing assertions (the pause itself is held to its lower bound in test/workload).
import { test } from "node:test";
import assert from "node:assert/strict";
import { runBench, type BenchOptions } from "../../src/bench/run.js";
import { SPECS as BENCH_SPECS, toOptions } from "../../src/bench/cli.js";
import { parseFlags } from "../../src/config/args.js";
import { startMini } from "../../bench/support/fakes/mini-server.js";
import { startTestSim } from "../sim/helpers.js";

/** the bench's options as its defaults make them (its own flag parser), for one run of the agentic workload */
function benchOptions(baseUrl: string, over: Partial<BenchOptions>): BenchOptions {
  const flags = ["--base-url", baseUrl, "--workload", "agentic", "--ignore-eos", "--no-progress"];
  return {
    ...toOptions(parseFlags(flags, BENCH_SPECS).flags),
    seed: 1,
    percentiles: [99],
    timeoutMs: 60_000,
    ...over,
  };
}

/** a code-gen session shrunk to a few hundred tokens, 50-100 ms pauses, every turn forking two sub-agents */
const TINY: BenchOptions["workloadFlags"] = {
  agenticPreset: "code-gen",
  agenticSessions: 3,
  agenticTurns: 3,
  agenticStartTokens: 120,
  agenticSharedTokens: 40,
  agenticGrowthTokens: 30,
  agenticCapTokens: 2_000,
  outputLen: 6,
  agenticPauseMedianS: 0.05,
  agenticPauseMaxS: 0.1,
  agenticForkProbability: 1,
  agenticForkCount: 2,
  agenticForkTurns: 1,
};

test("the agentic workload's flags reach the preset's knobs, and an unknown preset is refused", () => {
  const { flags } = parseFlags(
    [
      "--workload",
      "agentic",
      "--agentic-preset",
      "b2b",
      "--agentic-sessions",
      "5",
      "--agentic-pause-median",
      "0",
    ],
    BENCH_SPECS,
  );
  const o = toOptions(flags);
  assert.equal(o.workload, "agentic");
  assert.equal(o.workloadFlags.agenticPreset, "b2b");
  assert.equal(o.workloadFlags.agenticSessions, 5);
  assert.equal(o.workloadFlags.agenticPauseMedianS, 0);
  assert.throws(
    () => toOptions(parseFlags(["--workload", "agentic", "--agentic-preset", "chat"], BENCH_SPECS).flags),
    /--agentic-preset: expected one of code-gen, b2b/,
  );
});

test("each agent session's turns go out in order with its x-session-id, sub-agents carry their parent's context, and resumed turns are reported apart", async () => {
  const mini = await startMini({ tokenize: true, usage: true, ttftMs: 2, itlMs: 1 });
  try {
    const [run] = await runBench(
      benchOptions(mini.url, {
        workloadFlags: TINY,
        workload: "agentic",
        numRequests: null,
        concurrency: null,
      }),
      { warn: () => {} },
    );
    const { result, records } = run!;
    // 3 sessions × 3 turns, and 2 one-turn sub-agents after each of the first two turns
    assert.equal(result.completed, 3 * 3 + 3 * 2 * 2, JSON.stringify(result.errors));
    const chats = mini.seen.filter((s) => s.path === "/v1/chat/completions");
    const bySession = new Map<string, number[]>();
    for (const s of chats) {
      const id = String(s.headers["x-session-id"]);
      const n = (s.body.messages as unknown[]).length;
      bySession.set(id, [...(bySession.get(id) ?? []), n]);
    }
    for (let i = 0; i < 3; i++) {
      // system + one user message, then two more per answered turn, in order
      assert.deepEqual(bySession.get(`agent-${i}`), [2, 4, 6], `agent-${i}`);
      // a sub-agent forked after turn r starts with its parent's r + 1 turns answered
      assert.deepEqual(bySession.get(`agent-${i}/sub0@0`), [4]);
      assert.deepEqual(bySession.get(`agent-${i}/sub1@1`), [6]);
    }
    // the later turns of the three sessions waited for a tool; first turns and sub-agents did not
    assert.equal(records.filter((r) => r.resumed).length, 3 * 2);
    assert.equal(result.resumed!.resumed_turns, 3 * 2);
    assert.equal(result.resumed!.other_turns, 3 + 3 * 2 * 2);
    assert.ok(result.resumed!.resumed_ttft_p90_ms >= result.resumed!.resumed_ttft_p50_ms);
  } finally {
    await mini.close();
  }
});

test("switchyard bench --workload agentic against a sim completes every turn of a small b2b preset and reports resumed-turn TTFT", async () => {
  const sim = await startTestSim("meta-llama/Llama-3.1-8B-Instruct", ["--time-scale", "0.05", "--seed", "3"]);
  try {
    const [run] = await runBench(
      benchOptions(sim.url, {
        workload: "agentic",
        numRequests: null,
        concurrency: 2,
        workloadFlags: {
          agenticPreset: "b2b",
          agenticSessions: 4,
          agenticStartTokens: 200,
          agenticSharedTokens: 80,
          agenticGrowthTokens: 40,
          agenticCapTokens: 600,
          outputLen: 8,
          agenticPauseMedianS: 0.02,
          agenticPauseMaxS: 0.05,
        },
      }),
      { warn: () => {} },
    );
    const { result } = run!;
    assert.equal(result.failed, 0, JSON.stringify(result.errors));
    assert.equal(result.completed, 4 * 3);
    assert.equal(result.resumed!.resumed_turns, 4 * 2);
    assert.ok(Number.isFinite(result.resumed!.resumed_ttft_p50_ms));
    assert.ok(Number(result.total_input_tokens) > 4 * 3 * 200 * 0.8);
  } finally {
    await sim.close();
  }
});
