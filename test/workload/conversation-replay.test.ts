// The conversation-replay workload (src/workload/conversation-replay.ts): inference-perf's synthetic
// multi-turn conversations, drawn from clamped log-normal lengths, and its `llm-d-code-gen` preset.
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  conversationReplayOptions,
  conversationReplayWorkload,
  drawLogNormal,
} from "../../src/workload/conversation-replay.js";
import { intendedPromptTokens } from "../../src/workload/types.js";
import { makeRng } from "../../src/random/rng.js";
import { buildWorkload } from "../../src/workload/index.js";
import { SPECS as BENCH_SPECS, toOptions } from "../../src/bench/cli.js";
import { parseFlags } from "../../src/config/args.js";

test("a clamped log-normal draw stays in its bounds and has the asked mean when the bounds are far", () => {
  const rng = makeRng(7, "test");
  const d = { min: 1, max: 1e9, mean: 1_500, stdDev: 1_200 };
  let sum = 0;
  const n = 20_000;
  for (let i = 0; i < n; i++) {
    const x = drawLogNormal(d, rng);
    assert.ok(x >= d.min && x <= d.max);
    sum += x;
  }
  assert.ok(Math.abs(sum / n - 1_500) < 40, `mean ${sum / n}`);
  const tight = { min: 100, max: 200, mean: 1_500, stdDev: 1_200 };
  for (let i = 0; i < 100; i++) {
    const x = drawLogNormal(tight, rng);
    assert.ok(x >= 100 && x <= 200);
  }
  assert.throws(() => drawLogNormal({ min: 1, max: 2, mean: 0, stdDev: 1 }, rng), /mean/);
});

test("llm-d-code-gen conversations: system prompts of 3k-100k tokens, 2-20 turns each resending the conversation, none past the cap", () => {
  const o = conversationReplayOptions("llm-d-code-gen", 1, { conversations: 200 });
  const w = conversationReplayWorkload(o);
  const sessions = [...w.sessions];
  assert.equal(sessions.length, 200);
  assert.equal(w.sessionHeader, false);
  let system = 0;
  let turns = 0;
  let requests = 0;
  for (const s of sessions) {
    assert.ok(s.carriesHistory);
    assert.ok(s.systemTokens >= 3_000 && s.systemTokens <= 100_000, `${s.systemTokens}`);
    assert.ok(s.turns.length >= 1 && s.turns.length <= 20);
    system += s.systemTokens;
    turns += s.turns.length;
    requests += s.turns.length;
    let last = 0;
    for (let r = 0; r < s.turns.length; r++) {
      const t = s.turns[r]!;
      assert.ok(t.tokens >= 100 && t.tokens <= 10_000 && t.maxTokens >= 50 && t.maxTokens <= 4_000);
      assert.equal(t.pauseBeforeS, undefined); // turns follow at once
      const p = intendedPromptTokens(s, r);
      assert.ok(p > last && (r === 0 || p <= o.capTokens), `turn ${r}: ${p}`);
      last = p;
    }
  }
  assert.equal(w.naturalRequests, requests);
  // the post's means: system prompts about 55k, 6 turns (fewer where the cap ends a conversation)
  assert.ok(Math.abs(system / 200 - 55_000) < 5_000, `system mean ${system / 200}`);
  assert.ok(turns / 200 > 4.5 && turns / 200 < 7, `turns mean ${turns / 200}`);
});

test("the same seed gives the same conversations, text and all; another seed other ones", () => {
  const a = [
    ...conversationReplayWorkload(conversationReplayOptions("llm-d-code-gen", 3, { conversations: 3 }))
      .sessions,
  ];
  const b = [
    ...conversationReplayWorkload(conversationReplayOptions("llm-d-code-gen", 3, { conversations: 3 }))
      .sessions,
  ];
  const c = [
    ...conversationReplayWorkload(conversationReplayOptions("llm-d-code-gen", 4, { conversations: 3 }))
      .sessions,
  ];
  assert.deepEqual(a, b);
  assert.notDeepEqual(a, c);
  // conversations share no prefix: each system prompt starts with its own id
  assert.ok(a[0]!.system!.startsWith("conversation-0: ") && a[1]!.system!.startsWith("conversation-1: "));
});

test("a tool latency, when given, comes before every turn but the first", () => {
  const o = conversationReplayOptions("llm-d-code-gen", 1, {
    conversations: 5,
    systemTokens: { min: 100, max: 200, mean: 150, stdDev: 20 },
    toolLatencyS: { min: 1, max: 100, mean: 15, stdDev: 55 },
  });
  for (const s of conversationReplayWorkload(o).sessions) {
    assert.equal(s.turns[0]!.pauseBeforeS, undefined);
    for (const t of s.turns.slice(1)) assert.ok(t.pauseBeforeS! >= 1 && t.pauseBeforeS! <= 100);
  }
});

test("switchyard bench --workload conversation-replay: its flags reach the preset, and an unknown preset is refused", () => {
  const { flags } = parseFlags(
    ["--workload", "conversation-replay", "--replay-conversations", "3", "--concurrency", "2"],
    BENCH_SPECS,
  );
  const o = toOptions(flags);
  assert.equal(o.workload, "conversation-replay");
  assert.equal(o.concurrency, 2);
  const { workload, options } = buildWorkload(o.workload, o.workloadFlags, 1, 0, { tokensPerWord: 1 });
  assert.equal(options.preset, "llm-d-code-gen");
  assert.equal([...workload.sessions].length, 3);
  const bad = parseFlags(["--workload", "conversation-replay", "--replay-preset", "nope"], BENCH_SPECS);
  assert.throws(() => toOptions(bad.flags), /--replay-preset: expected one of llm-d-code-gen/);
});
