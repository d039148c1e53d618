// Session identity from what clients send (src/routing/sessions/session-identity.ts): vllm-router's
// `vllm_xargs.agentic_context`, the session header, a body field, the Responses chain, and for requests
// naming none the session whose last prompt they extend; bounded by a cap and an idle expiry.
import { test } from "node:test";
import assert from "node:assert/strict";
import v8 from "node:v8";
import vm from "node:vm";
import { SessionTracker, agenticContextOf } from "../../../src/routing/index.js";

const system = { role: "system", content: `You are a coding agent. ${"tools and rules ".repeat(200)}` };
/** an agent's conversation after `turns` answered turns, with the next turn's tool output last */
function conversation(agent: string, turns: number): Record<string, unknown> {
  const messages: unknown[] = [system, { role: "user", content: `${agent}: fix the failing test` }];
  for (let t = 0; t < turns; t++) {
    messages.push({ role: "assistant", content: `${agent} step ${t}: run the tests` });
    messages.push({ role: "user", content: `${agent} tool output ${t}: ${"log line ".repeat(50)}` });
  }
  return { model: "m", messages };
}

test("a request's session comes from the configured header, a body field when the header is absent, and is undefined with neither", () => {
  const s = new SessionTracker({ bodyKey: "user", infer: false });
  assert.deepEqual(s.identify({ header: "abc", body: { user: "u1" } }, 0), { key: "abc", source: "header" });
  assert.deepEqual(s.identify({ header: "", body: { user: "u1" } }, 1), { key: "u1", source: "body" });
  assert.equal(s.identify({ body: { model: "m" } }, 2), undefined);
  assert.equal(s.get("abc")!.turns, 1);
  assert.equal(s.size, 2);
});

test("vllm_xargs.agentic_context names the session by its program_id, ahead of the header, with its parent and request hints read", () => {
  const s = new SessionTracker();
  const body = {
    model: "m",
    vllm_xargs: {
      agentic_context: {
        program_id: "task-a:researcher",
        parent_program_id: "task-a:lead",
        root_program_id: "task-a:lead",
        session_id: "session-a",
        priority: 10,
        deadline_seconds: 30,
        step_id: "seven", // the wrong type: left out
      },
    },
  };
  const id = s.identify({ header: "from-header", body }, 0)!;
  assert.equal(id.key, "task-a:researcher");
  assert.equal(id.source, "agentic-context");
  assert.equal(id.agentic!.priority, 10);
  assert.equal(id.agentic!.deadlineS, 30);
  assert.equal(id.agentic!.stepId, undefined);
  assert.equal(s.get("task-a:researcher")!.parent, "task-a:lead");
  // no program_id: session_id names the program; nothing usable: not agentic at all
  assert.equal(agenticContextOf({ vllm_xargs: { agentic_context: { session_id: "s" } } })!.programId, "s");
  assert.equal(agenticContextOf({ vllm_xargs: { agentic_context: { program_id: 7 } } }), undefined);
  assert.equal(agenticContextOf({ vllm_xargs: "x" }), undefined);
  // turned off: the header decides
  const off = new SessionTracker({ agenticContext: false });
  assert.equal(off.identify({ header: "from-header", body }, 0)!.key, "from-header");
});

test("a Responses follow-up belongs to its previous response's session across turns, and starts one at its previous response when that had none", () => {
  const s = new SessionTracker();
  // turn 2 of a chain whose first turn named no session: the session is named after the first response
  const t2 = s.identify(
    { body: { model: "m", input: "next" }, previousResponse: { id: "resp_1", session: undefined } },
    0,
  )!;
  assert.deepEqual(t2, { key: "~r:resp_1", source: "response-chain" });
  // the router remembers t2's response with that session; turn 3 names t2's response
  const t3 = s.identify(
    { body: { model: "m", input: "more" }, previousResponse: { id: "resp_2", session: t2.key } },
    1,
  )!;
  assert.equal(t3.key, "~r:resp_1");
  assert.equal(s.get("~r:resp_1")!.turns, 2);
  // a header still wins over the chain
  assert.equal(s.identify({ header: "h", previousResponse: { id: "resp_3", session: "x" } }, 2)!.key, "h");
});

test("a request naming no session joins the session whose last prompt it extends: each agent's turns find their own, a first prompt none", () => {
  const s = new SessionTracker();
  assert.equal(s.identify({ body: conversation("alice", 0) }, 0), undefined);
  assert.equal(s.identify({ body: conversation("bob", 0) }, 1), undefined);
  const a1 = s.identify({ body: conversation("alice", 1) }, 2)!;
  const b1 = s.identify({ body: conversation("bob", 1) }, 3)!;
  assert.equal(a1.source, "inferred");
  assert.notEqual(a1.key, b1.key);
  assert.equal(s.identify({ body: conversation("alice", 2) }, 4)!.key, a1.key);
  assert.equal(s.identify({ body: conversation("bob", 2) }, 5)!.key, b1.key);
  // the same prompt again extends nothing: a repeat is not a next turn
  assert.equal(s.identify({ body: conversation("carol", 0) }, 6), undefined);
  assert.equal(s.identify({ body: conversation("carol", 0) }, 7), undefined);
});

test("text prompts are inferred by their blocks: a prompt that appends to an earlier one joins it, one sharing only its system part does not", () => {
  const s = new SessionTracker();
  const shared = "shared system prompt ".repeat(100);
  assert.equal(s.identify({ body: { prompt: `${shared}question one` } }, 0), undefined);
  assert.equal(s.identify({ body: { prompt: `${shared}question two` } }, 1), undefined);
  const next = s.identify({ body: { prompt: `${shared}question one\n\nanswer one\n\nfollow-up` } }, 2)!;
  assert.equal(next.source, "inferred");
  assert.equal(
    s.identify({ body: { prompt: `${shared}question one\n\nanswer one\n\nfollow-up\n\nagain` } }, 3)!.key,
    next.key,
  );
  const other = s.identify({ body: { prompt: `${shared}question two and more` } }, 4)!;
  assert.notEqual(other.key, next.key);
});

test("a conversation longer than the request's hashing budget is still joined by its next turn, and told from another that differs at its end", () => {
  const s = new SessionTracker();
  // 300 messages of 16,000 characters: 4.8 million, past the 1 MiB hashed in full or sampled
  const long = (agent: string) =>
    Array.from({ length: 300 }, (_, i) => ({
      role: i % 2 ? "assistant" : "user",
      content: `${i} ${"w".repeat(16_000)}`,
    })).concat([{ role: "user", content: `${agent} asks` }]);
  const alice = long("alice");
  const bob = long("bob");
  assert.equal(s.identify({ body: { messages: alice } }, 0), undefined);
  assert.equal(s.identify({ body: { messages: bob } }, 1), undefined);
  const a2 = s.identify({ body: { messages: [...alice, { role: "assistant", content: "ok" }] } }, 2)!;
  const b2 = s.identify({ body: { messages: [...bob, { role: "assistant", content: "ok" }] } }, 3)!;
  assert.equal(a2.source, "inferred");
  assert.notEqual(a2.key, b2.key);
});

test("inference can be turned off, and a prompt older than the idle time is not joined", () => {
  const off = new SessionTracker({ infer: false });
  off.identify({ body: conversation("alice", 0) }, 0);
  assert.equal(off.identify({ body: conversation("alice", 1) }, 1), undefined);
  const s = new SessionTracker({ idleMs: 1_000 });
  s.identify({ body: conversation("alice", 0) }, 0);
  assert.equal(s.identify({ body: conversation("alice", 1) }, 5_000), undefined);
});

test("sessions beyond the cap evict the least recently seen, and sessions idle past the expiry are forgotten", () => {
  const s = new SessionTracker({ maxSessions: 3, idleMs: 1_000 });
  for (const k of ["a", "b", "c"]) s.identify({ header: k }, 0);
  s.identify({ header: "a" }, 10); // a is now the most recent
  s.identify({ header: "d" }, 20); // over the cap: b, the least recently seen, goes
  assert.equal(s.size, 3);
  assert.equal(s.evictions, 1);
  assert.equal(s.get("b"), undefined);
  assert.ok(s.get("a") && s.get("c") && s.get("d"));
  // c was last seen at 0: idle past 1 s at 1,005; a (10) and d (20) not yet
  s.identify({ header: "e" }, 1_005);
  assert.equal(s.get("c"), undefined);
  assert.equal(s.expired, 1);
  assert.deepEqual([s.get("a")?.turns, s.get("d")?.turns, s.get("e")?.turns], [2, 1, 1]);
  // a lower cap applies at once
  s.configure({ maxSessions: 1 });
  assert.equal(s.size, 1);
  assert.ok(s.get("e"));
});

test("10,000 sessions and more stay within the cap, their remembered prompts too, with keys too long for memory hashed", () => {
  const cap = 4_096;
  const s = new SessionTracker({ maxSessions: cap });
  let now = 0;
  for (let i = 0; i < 12_000; i++) {
    s.identify({ header: `agent-${i}` }, now++);
    s.identify({ body: conversation(`agent-${i}`, i % 3) }, now++);
    assert.ok(s.size <= cap && s.indexed <= 2 * cap);
  }
  assert.equal(s.size, cap);
  assert.ok(s.evictions >= 12_000 - cap);
  const long = s.identify({ header: "k".repeat(100_000) }, now)!;
  assert.ok(long.key.length < 64);
});

test("the prompt ends remembered hold none of their prompts: 2,000 prompts of 64 KB leave the heap a few MB larger", () => {
  v8.setFlagsFromString("--expose-gc");
  const gc = vm.runInNewContext("gc") as () => void;
  const s = new SessionTracker();
  gc();
  const before = process.memoryUsage().heapUsed;
  for (let i = 0; i < 2_000; i++) {
    // each prompt its own flat string, as JSON.parse gives them, with a tail past its last whole block
    const prompt = JSON.parse(
      JSON.stringify(`${i} ${"words of a long prompt ".repeat(2_850)} tail`),
    ) as string;
    s.identify({ body: { prompt } }, i);
  }
  gc();
  const grew = (process.memoryUsage().heapUsed - before) / 2 ** 20;
  // kept as slices of their prompts, the tails held all 128 MB of them
  assert.ok(grew < 16, `the heap grew ${grew.toFixed(1)} MB`);
  assert.equal(s.indexed, 2_000);
});
