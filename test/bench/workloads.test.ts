// Workload generators are pure and seeded: same options and seed → same requests; lengths in
// words follow the calibration; sessions carry history; arrivals have the asked rate.
import { test } from "node:test";
import assert from "node:assert/strict";
import { arrivalTimes } from "../../src/workload/arrivals.js";
import { datasetWorkload, parseDataset } from "../../src/workload/dataset.js";
import { buildWorkload, WORKLOADS } from "../../src/workload/index.js";
import { multiRoundQaWorkload, MULTI_ROUND_QA_DEFAULTS } from "../../src/workload/multi-round-qa.js";
import { randomWorkload } from "../../src/workload/random.js";
import { sharedPrefixWorkload } from "../../src/workload/shared-prefix.js";
import {
  chatMessages,
  completionPrompt,
  intendedPromptTokens,
  type Session,
} from "../../src/workload/types.js";

const words = (s: string) => s.split(/\s+/).filter(Boolean).length;
const take = (it: Iterable<Session>, n = Infinity) => {
  const out: Session[] = [];
  for (const s of it) {
    if (out.length >= n) break;
    out.push(s);
  }
  return out;
};

test("every workload is deterministic in its seed", () => {
  // dataset and trace read a file (test/workload/trace.test.ts checks the trace's seed)
  for (const name of WORKLOADS.filter((w) => w !== "dataset" && w !== "trace")) {
    const a = take(buildWorkload(name, {}, 7, 20, { tokensPerWord: 1 }).workload.sessions, 20);
    const b = take(buildWorkload(name, {}, 7, 20, { tokensPerWord: 1 }).workload.sessions, 20);
    const c = take(buildWorkload(name, {}, 8, 20, { tokensPerWord: 1 }).workload.sessions, 20);
    assert.deepEqual(a, b, name);
    assert.notDeepEqual(a, c, name);
  }
});

test("random: lengths in words follow tokens per word and the range ratio", () => {
  const flat = take(
    randomWorkload({ inputLen: 100, outputLen: 20, rangeRatio: 0, seed: 1, count: 5 }).sessions,
  );
  assert.equal(flat.length, 5);
  for (const s of flat) {
    assert.equal(words(s.turns[0]!.text), 100);
    assert.equal(s.turns[0]!.maxTokens, 20);
  }
  const halved = take(
    randomWorkload({ inputLen: 100, outputLen: 20, rangeRatio: 0, seed: 1, count: 1 }, { tokensPerWord: 2 })
      .sessions,
  );
  assert.equal(words(halved[0]!.turns[0]!.text), 50);
  const ranged = take(
    randomWorkload({ inputLen: 100, outputLen: 20, rangeRatio: 0.5, seed: 1, count: 200 }).sessions,
  );
  const lens = ranged.map((s) => s.turns[0]!.tokens);
  assert.ok(Math.min(...lens) >= 50 && Math.max(...lens) <= 150);
  assert.ok(new Set(lens).size > 20, "lengths vary");
});

test("shared-prefix: groups share their system prompt, groups differ, order is shuffled", () => {
  const w = sharedPrefixWorkload({
    numGroups: 4,
    promptsPerGroup: 3,
    systemPromptLen: 50,
    questionLen: 10,
    outputLen: 5,
    seed: 3,
  });
  const all = take(w.sessions);
  assert.equal(all.length, 12);
  assert.equal(w.naturalRequests, 12);
  const byGroup = new Map<string, Set<string>>();
  for (const s of all) {
    const g = s.id.split("-")[0]!;
    byGroup.set(g, (byGroup.get(g) ?? new Set()).add(s.system!));
  }
  assert.equal(byGroup.size, 4);
  for (const systems of byGroup.values()) assert.equal(systems.size, 1);
  assert.equal(new Set(all.map((s) => s.system)).size, 4);
  assert.notDeepEqual(
    all.map((s) => s.id.split("-")[0]),
    ["g0", "g0", "g0", "g1", "g1", "g1", "g2", "g2", "g2", "g3", "g3", "g3"],
  );
});

test("multi-round-qa: users share the system prompt head, diverge after it, and carry history", () => {
  const o = {
    ...MULTI_ROUND_QA_DEFAULTS,
    numUsers: 3,
    numRounds: 4,
    sharedSystemPrompt: 40,
    userHistoryPrompt: 30,
    seed: 5,
  };
  const w = multiRoundQaWorkload(o);
  assert.equal(w.defaultEndpoint, "chat");
  assert.ok(w.sessionHeader);
  const users = take(w.sessions);
  assert.equal(users.length, 3);
  const heads = users.map((u) => u.system!.split("\n\n")[0]);
  assert.equal(new Set(heads).size, 1);
  assert.equal(words(heads[0]!), 40);
  assert.equal(new Set(users.map((u) => u.system)).size, 3);
  const u = users[1]!;
  assert.equal(u.id, "user-1");
  assert.equal(u.turns.length, 4);
  const msgs = chatMessages(u, 2, ["answer zero", "answer one"]);
  assert.deepEqual(
    msgs.map((m) => m.role),
    ["system", "user", "assistant", "user", "assistant", "user"],
  );
  assert.equal(msgs[2]!.content, "answer zero");
  assert.equal(msgs[5]!.content, u.turns[2]!.text);
  const prompt = completionPrompt(u, 1, ["answer zero"]);
  assert.ok(
    prompt.startsWith(u.system!) && prompt.includes("answer zero") && prompt.endsWith(u.turns[1]!.text),
  );
  assert.equal(intendedPromptTokens(u, 2), 40 + 30 + 2 * (o.questionLen + o.answerLen) + o.questionLen);
});

test("arrivals: constant gaps are exact, Poisson gaps have the asked mean", () => {
  assert.deepEqual(arrivalTimes(4, 4, "constant", 0), [0, 0.25, 0.5, 0.75]);
  const t = arrivalTimes(20001, 50, "poisson", 11);
  const meanGap = t[t.length - 1]! / 20000;
  assert.ok(Math.abs(meanGap - 0.02) < 0.001, `mean gap ${meanGap}`);
  assert.deepEqual(arrivalTimes(3, Infinity, "poisson", 0), [0, 0, 0]);
  assert.deepEqual(t.slice(0, 5), arrivalTimes(5, 50, "poisson", 11));
});

test("the dataset workload reads its file through the reader its caller passes, and refuses without one", () => {
  const read: string[] = [];
  const readText = (path: string): string => {
    read.push(path);
    return JSON.stringify({ prompt: "hello there", output_len: 7 });
  };
  const { workload, options } = buildWorkload(
    "dataset",
    { datasetPath: "prompts.jsonl", datasetShuffle: false },
    1,
    1,
    { tokensPerWord: 1 },
    readText,
  );
  assert.deepEqual(read, ["prompts.jsonl"]);
  assert.equal(options.entries, 1);
  assert.equal(take(workload.sessions)[0]!.turns[0]!.maxTokens, 7);
  assert.throws(
    () => buildWorkload("dataset", { datasetPath: "prompts.jsonl" }, 1, 1, { tokensPerWord: 1 }),
    /readText/,
  );
});

test("dataset: JSONL prompts, chat messages and ShareGPT conversations", () => {
  const jsonl = [
    JSON.stringify({ prompt: "hello there", output_len: 7 }),
    "not json",
    JSON.stringify({
      messages: [
        { role: "system", content: "be brief" },
        { role: "user", content: "q1" },
        { role: "assistant", content: "a1" },
        { role: "user", content: "q2" },
      ],
    }),
    JSON.stringify({ other: 1 }),
  ].join("\n");
  const { entries, skipped } = parseDataset(jsonl);
  assert.equal(entries.length, 2);
  assert.equal(skipped, 2);
  assert.deepEqual(entries[1]!.users, ["q1", "q2"]);
  assert.equal(entries[1]!.system, "be brief");
  const w = datasetWorkload(entries, { seed: 0, outputLen: null, defaultOutputLen: 33, shuffle: false });
  const s = take(w.sessions);
  assert.equal(s[0]!.turns[0]!.maxTokens, 7);
  assert.equal(s[1]!.turns[1]!.maxTokens, 33);
  assert.ok(s[1]!.carriesHistory);
  assert.equal(w.defaultEndpoint, "chat");
  const share = JSON.stringify([
    {
      id: "x",
      conversations: [
        { from: "human", value: "What is a cat?" },
        { from: "gpt", value: "A cat is a small animal, often kept as a pet." },
      ],
    },
    { id: "y", conversations: [] },
  ]);
  const sg = parseDataset(share);
  assert.equal(sg.entries.length, 1);
  assert.equal(sg.skipped, 1);
  assert.equal(sg.entries[0]!.users[0], "What is a cat?");
  assert.ok(sg.entries[0]!.outputLens[0]! > 5);
  const forced = take(
    datasetWorkload(sg.entries, { seed: 0, outputLen: 3, defaultOutputLen: 9, shuffle: true }).sessions,
  );
  assert.equal(forced[0]!.turns[0]!.maxTokens, 3);
});
