// The agentic workload (src/workload/agentic.ts) and the drivers that honour its tool pauses and
// sub-agents: the fleet simulator's load driver in virtual time and the live bench's loop on real timers.
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  agenticOptions,
  agenticWorkload,
  withForks,
  type AgenticOptions,
} from "../../src/workload/agentic.js";
import { intendedPromptTokens, type Session } from "../../src/workload/types.js";
import { LoadRun } from "../../src/bench/load.js";
import type { RequestRecord } from "../../src/workload/record.js";
import { defaultEngineConfig } from "../../src/engine/index.js";
import { resolveGpu, resolveModel } from "../../src/models/index.js";
import { simulateFleet } from "../../src/fleet/fleet.js";

const small = (over: Partial<Omit<AgenticOptions, "seed">> = {}, seed = 1): AgenticOptions =>
  agenticOptions("code-gen", seed, {
    sessions: 4,
    turns: 6,
    startTokens: 300,
    sharedTokens: 100,
    growthTokens: 60,
    outputTokens: 8,
    capTokens: 700,
    pauseMedianS: 0.02,
    pauseMaxS: 0.05,
    ...over,
  });

test("an agentic session's prompt grows by each turn's tool output and answer, and never passes the cap", () => {
  const o = small({ forkProbability: 0 });
  const sessions = [...agenticWorkload(o).sessions];
  assert.equal(sessions.length, 4);
  for (const s of sessions) {
    assert.ok(s.turns.length >= 1 && s.turns.length <= 6);
    let last = 0;
    for (let r = 0; r < s.turns.length; r++) {
      const p = intendedPromptTokens(s, r);
      assert.ok(p > last, `${s.id} turn ${r}`);
      assert.ok(p <= o.capTokens, `${s.id} turn ${r}: ${p}`);
      last = p;
    }
  }
});

test("every turn after a session's first waits for a seeded tool pause within the bound, the same for the same seed", () => {
  const pauses = (seed: number) =>
    [...agenticWorkload(small({}, seed)).sessions].flatMap((s) => s.turns.map((t) => t.pauseBeforeS ?? 0));
  const a = pauses(7);
  assert.deepEqual(a, pauses(7));
  assert.notDeepEqual(a, pauses(8));
  for (const s of agenticWorkload(small()).sessions) {
    assert.equal(s.turns[0]!.pauseBeforeS, undefined);
    for (const t of s.turns.slice(1)) assert.ok(t.pauseBeforeS! > 0 && t.pauseBeforeS! <= 0.05);
  }
});

test("a sub-agent starts with its parent's turns so far, names its parent, and counts in the natural request total", () => {
  const w = agenticWorkload(small({ forkProbability: 1, forkCount: 2, forkTurns: 2 }));
  const all = [...withForks(w.sessions)];
  const forks = all.filter((s) => s.parentId !== undefined);
  assert.ok(forks.length > 0);
  const byId = new Map(all.map((s) => [s.id, s]));
  for (const f of forks) {
    const parent = byId.get(f.parentId!)!;
    const k = f.startRound!;
    assert.equal(f.system, parent.system);
    assert.deepEqual(
      f.turns.slice(0, k).map((t) => t.text),
      parent.turns.slice(0, k).map((t) => t.text),
    );
    assert.equal(f.turns[k]!.pauseBeforeS, undefined);
  }
  const sent = all.reduce((n, s) => n + s.turns.length - (s.startRound ?? 0), 0);
  assert.equal(w.naturalRequests, sent);
});

test("in the fleet simulator a resumed turn is sent no sooner than its tool pause after the previous answer, and a sub-agent's prompt begins with its parent's context", () => {
  const o = small({
    sessions: 3,
    forkProbability: 1,
    forkCount: 1,
    forkTurns: 1,
    pauseMedianS: 2,
    pauseMaxS: 5,
  });
  const w = agenticWorkload(o);
  const byId = new Map([...withForks(w.sessions)].map((s) => [s.id, s]));
  const engine = defaultEngineConfig(resolveModel("meta-llama/Llama-3.1-8B-Instruct"), resolveGpu("h100"), {
    maxModelLen: 4096,
  });
  const res = simulateFleet({
    engine,
    engines: 2,
    policy: "round-robin",
    sessionKey: "session",
    scrapeIntervalS: 1,
    sharedServer: null,
    workload: w,
    qps: Infinity,
    arrival: "poisson",
    concurrency: Infinity,
    maxRequests: Infinity,
    durationS: Infinity,
    seed: 1,
    recordItl: false,
  });
  const at = new Map(res.records.map((r) => [`${r.sessionId}#${r.round}`, r]));
  let resumed = 0;
  let forks = 0;
  for (const r of res.records) {
    assert.ok(r.ok, `${r.sessionId}#${r.round}`);
    const s = byId.get(r.sessionId)!;
    const start = s.startRound ?? 0;
    if (r.round > start) {
      const prev = at.get(`${r.sessionId}#${r.round - 1}`)!;
      const pauseMs = s.turns[r.round]!.pauseBeforeS! * 1000;
      assert.ok(r.start >= prev.start + prev.e2el + pauseMs - 1e-6, `${r.sessionId}#${r.round}`);
      resumed++;
    } else if (s.parentId !== undefined) {
      // the fork's first prompt is its parent's prompt and answer, then its own turn
      const parent = at.get(`${s.parentId}#${start - 1}`)!;
      assert.ok(r.start >= parent.start + parent.e2el - 1e-6);
      assert.ok(r.promptTokens > parent.promptTokens + parent.outputTokens);
      forks++;
    }
  }
  assert.ok(resumed > 0 && forks > 0);
  assert.equal(res.records.length, w.naturalRequests);
});

test("the live bench loop waits out a tool pause after an answer and starts sub-agents with the parent's answers", async () => {
  const w = agenticWorkload(
    small({
      sessions: 2,
      forkProbability: 1,
      forkCount: 1,
      forkTurns: 1,
      pauseMedianS: 0.2,
      pauseMaxS: 0.25,
    }),
  );
  const sent: { id: string; round: number; answers: readonly string[]; at: number }[] = [];
  const answeredAt = new Map<string, number>();
  const run = new LoadRun(
    {
      qps: Infinity,
      arrival: "poisson",
      concurrency: Infinity,
      maxRequests: 1000,
      durationS: Infinity,
      seed: 1,
    },
    async (t) => {
      sent.push({ id: t.session.id, round: t.round, answers: t.answers.slice(), at: performance.now() });
      await new Promise((r) => setImmediate(r));
      answeredAt.set(`${t.session.id}#${t.round}`, performance.now());
      const record: RequestRecord = {
        index: t.index,
        sessionId: t.session.id,
        round: t.round,
        start: 0,
        ok: true,
        ttft: 1,
        itl: [],
        e2el: 1,
        promptTokens: 1,
        outputTokens: 1,
        usageReported: true,
        httpStatus: 200,
        errorKind: null,
        error: "",
      };
      return { record, text: `answer ${t.session.id} ${t.round}` };
    },
  );
  const result = await run.run(w.sessions);
  assert.equal(result.records.length, w.naturalRequests);
  const byId = new Map<string, Session>([...withForks(w.sessions)].map((s) => [s.id, s]));
  for (const s of sent) {
    const session = byId.get(s.id)!;
    const start = session.startRound ?? 0;
    if (s.round > start) {
      // a timer measures from the event loop's cached clock, which a busy machine leaves tens of ms
      // stale: the pause is waited out to within 50 ms (a 200–250 ms pause, so waiting is what shows)
      const pauseMs = session.turns[s.round]!.pauseBeforeS! * 1000;
      assert.ok(s.at >= answeredAt.get(`${s.id}#${s.round - 1}`)! + pauseMs - 50, `${s.id}#${s.round}`);
    }
    if (session.parentId !== undefined && s.round === start) {
      assert.deepEqual(
        s.answers,
        Array.from({ length: start }, (_, r) => `answer ${session.parentId} ${r}`),
      );
    }
  }
});
