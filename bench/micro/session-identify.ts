// What the router's edge pays per generation request to find its session (SessionTracker.identify,
// src/routing/sessions/session-identity.ts), in-process and steady (the tracker already holds the sessions), for
// the request shapes the router sees: the router benchmarks' completion `"hi"`, a one-message chat
// "hello", a 3.6k-token single user message, a multi-round QA turn (a 1k-token system prompt and a
// 4k-token history, each turn extending its session's last) and a coding agent's turn (a 100k-token
// context, each turn adding a tool call and its 2k-token output), against JSON.parse of the same body,
// which the router does anyway. CPU time, so that other work on a shared machine does not count. A
// request's prompt is hashed to find the session it extends, so the cost grows with the prompt; a
// policy that never reads `sessionKey` skips this (policyReadsSessions).
//   node dist/bench/micro/session-identify.js [--sessions 64] [--agents 16] [--rounds 5] [--reps 7] [--seed 1]
import type { FlagSpecs } from "../../src/config/args.js";
import { benchFlags } from "../support/flags.js";
import { SessionTracker } from "../../src/routing/index.js";
import { makeRng, type Rng } from "../../src/random/rng.js";
import { median } from "../../src/workload/stats.js";

const specs: FlagSpecs = {
  sessions: { type: "int", default: 64, min: 1, help: "multi-round QA sessions interleaved" },
  agents: {
    type: "int",
    default: 16,
    min: 1,
    help: "coding-agent sessions (100k-token contexts) interleaved",
  },
  rounds: { type: "int", default: 5, min: 1, help: "turns per QA session timed (each extends the last)" },
  reps: { type: "int", default: 7, min: 1, help: "timed passes per shape (the median is reported)" },
  seed: { type: "int", default: 1, help: "" },
};
const { flags } = benchFlags(specs);
const SESSIONS = Number(flags.sessions);
const AGENTS = Number(flags.agents);
const ROUNDS = Number(flags.rounds);
const REPS = Number(flags.reps);

/** ~4 characters a token, as English text tokenizes */
const CHARS_PER_TOKEN = 4;
const VOCAB =
  "the of and to in is that for it as with was on be by this are from or at an which have not but can " +
  "model cache engine request token prompt session router latency batch decode prefill memory block";
const WORDS = VOCAB.split(" ");

function text(rng: Rng, tokens: number): string {
  const want = tokens * CHARS_PER_TOKEN;
  const parts: string[] = [];
  let n = 0;
  while (n < want) {
    const w = WORDS[rng.int(0, WORDS.length - 1)]!;
    parts.push(w);
    n += w.length + 1;
  }
  return parts.join(" ");
}

/** as the router holds it: parsed from JSON (flat strings, not the ropes concatenation builds) */
const parsed = (o: unknown) => JSON.parse(JSON.stringify(o)) as Record<string, unknown>;

interface Shape {
  name: string;
  /** bodies sent in this order (a tiny one over and over; the others once each, as clients send them) */
  bodies: Record<string, unknown>[];
  json: string[];
  /** bodies before this only warm the tracker */
  from: number;
}

function shapes(): Shape[] {
  const rng = makeRng(Number(flags.seed), "session-identify");
  const out: Shape[] = [];
  const hi = parsed({ model: "m", prompt: "hi", max_tokens: 1 });
  out.push({ name: 'completion "hi" (the router benchmarks\' body)', bodies: [hi], json: [], from: 0 });
  const hello = parsed({ model: "m", messages: [{ role: "user", content: "hello" }], max_tokens: 16 });
  out.push({ name: 'chat "hello"', bodies: [hello], json: [], from: 0 });
  const singles: Record<string, unknown>[] = [];
  for (let i = 0; i < 1_000; i++)
    singles.push(
      parsed({ model: "m", messages: [{ role: "user", content: text(rng, 3_600) }], max_tokens: 64 }),
    );
  out.push({ name: "chat, one 3.6k-token user message", bodies: singles, json: [], from: 0 });
  // multi-round QA: a shared 1k-token system prompt, then question/answer pairs of 200 + 200 tokens;
  // the timed turns start once the history holds 4k tokens and go round the sessions, each turn of a
  // session extending its previous one (the tracker finds it by inference)
  const system = text(rng, 1_000);
  const pairs = 10 + ROUNDS;
  const qa: Record<string, unknown>[][] = [];
  for (let s = 0; s < SESSIONS; s++) {
    const messages: { role: string; content: string }[] = [{ role: "system", content: system }];
    const turns: Record<string, unknown>[] = [];
    for (let p = 0; p < pairs; p++) {
      messages.push({ role: "user", content: text(rng, 200) });
      turns.push(parsed({ model: "m", messages, max_tokens: 200 }));
      messages.push({ role: "assistant", content: text(rng, 200) });
    }
    qa.push(turns);
  }
  const warm: Record<string, unknown>[] = [];
  const timed: Record<string, unknown>[] = [];
  for (let p = 0; p < pairs; p++) for (let s = 0; s < SESSIONS; s++) (p < 10 ? warm : timed).push(qa[s]![p]!);
  out.push({
    name: "chat, multi-round QA (1k-token system + 4k-token history)",
    bodies: [...warm, ...timed],
    json: [],
    from: warm.length,
  });
  // coding agents: a shared 10k-token system prompt, then tool calls with 2k-token outputs; the timed
  // turns start at 45 calls (about 100k tokens), past the 256 KiB a request is hashed in full
  const tools = text(rng, 10_000);
  const agents: Record<string, unknown>[][] = [];
  for (let a = 0; a < AGENTS; a++) {
    const messages: Record<string, unknown>[] = [
      { role: "system", content: tools },
      { role: "user", content: text(rng, 100) },
    ];
    const turns: Record<string, unknown>[] = [];
    for (let c = 0; c < 45 + ROUNDS; c++) {
      const id = `call_${a}_${c}`;
      const args = JSON.stringify({ path: `src/f${c}.ts`, query: text(rng, 20) });
      messages.push(
        {
          role: "assistant",
          content: null,
          tool_calls: [{ id, type: "function", function: { name: "read", arguments: args } }],
        },
        { role: "tool", tool_call_id: id, content: text(rng, 2_000) },
      );
      if (c >= 43) turns.push(parsed({ model: "m", messages, max_tokens: 256 }));
    }
    agents.push(turns);
  }
  // two turns each before the timed ones: the second finds the first (a session under way)
  const agentWarm = [...agents.map((t) => t[0]!), ...agents.map((t) => t[1]!)];
  const agentTimed: Record<string, unknown>[] = [];
  for (let c = 2; c < 2 + ROUNDS; c++) for (const t of agents) agentTimed.push(t[c]!);
  out.push({
    name: "chat, coding agent turn (100k-token context + a 2k-token tool output)",
    bodies: [...agentWarm, ...agentTimed],
    json: [],
    from: agentWarm.length,
  });
  for (const sh of out) sh.json = sh.bodies.map((b) => JSON.stringify(b));
  return out;
}

/** this process's CPU time, µs: what other work on a shared machine takes of the wall clock is not counted */
function cpuUs(): number {
  const u = process.cpuUsage();
  return u.user + u.system;
}

/** µs per identify() over `bodies` (those before `from` only warm the tracker), and how many found a session */
function timeIdentify(bodies: Record<string, unknown>[], from: number): { us: number; found: number } {
  const t = new SessionTracker();
  let now = 0;
  for (let i = 0; i < from; i++) t.identify({ body: bodies[i] }, (now += 1));
  // a tiny body over and over, so that a pass is long enough to time; the others are distinct
  const passes = bodies.length === 1 ? 20_000 : 1;
  let found = 0;
  const t0 = cpuUs();
  for (let k = 0; k < passes; k++)
    for (let i = from; i < bodies.length; i++) if (t.identify({ body: bodies[i] }, (now += 1))) found++;
  const n = passes * (bodies.length - from);
  return { us: (cpuUs() - t0) / n, found: found / n };
}

function timeParse(json: string[], from: number): number {
  const passes = json.length === 1 ? 20_000 : 1;
  let sink = 0;
  const t0 = cpuUs();
  for (let k = 0; k < passes; k++)
    for (let i = from; i < json.length; i++) sink += Object.keys(JSON.parse(json[i]!) as object).length;
  const us = (cpuUs() - t0) / (passes * (json.length - from));
  if (sink < 0) console.log(sink);
  return us;
}

const rows: string[] = [];
for (const sh of shapes()) {
  const from = sh.from;
  const chars = sh.json.slice(from).reduce((a, j) => a + j.length, 0) / (sh.json.length - from);
  const ids: number[] = [];
  const parses: number[] = [];
  let found = 0;
  for (let r = 0; r < REPS; r++) {
    const x = timeIdentify(sh.bodies, from);
    ids.push(x.us);
    found = x.found;
    parses.push(timeParse(sh.json, from));
  }
  rows.push(
    `| ${sh.name} | ${Math.round(chars).toLocaleString("en-US")} | ${median(ids).toFixed(2)} | ` +
      `${Math.round(found * 100)}% | ${median(parses).toFixed(1)} |`,
  );
}
console.log(`node ${process.version}, ${REPS} passes, medians, CPU time`);
console.log("| request | body chars | identify µs | session found | JSON.parse µs |");
console.log("|---|---|---|---|---|");
for (const r of rows) console.log(r);
