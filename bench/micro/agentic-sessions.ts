// 10,000 concurrent agent sessions through the router's session identity (src/routing/sessions/session-identity.ts),
// coming and going: each session sends 2-12 turns with tool pauses between them (log-normal, median 8 s,
// at most 2 min) on a virtual clock, one in ten abandons mid-way (left for the idle expiry), and a
// finished or abandoned session's slot starts a new one, so 10,000 are always active. The sessions name
// themselves as clients do, a quarter each: the x-session-id header, vllm_xargs.agentic_context (one in
// four of those a sub-agent with a parent program), nothing (inferred from the growing conversation: a
// 40,000-character shared system prompt, then the session's own messages), and the Responses chain
// (previous_response_id, whose session the router would have remembered with the response).
// What it reports: sessions tracked at the end and at most (the cap holds), evictions and expiries, heap
// bytes per tracked session (the tracker's retained heap: heap with it minus heap once it is dropped,
// after a full GC each, so the driver's own state is not counted), identify() time per request, and
// the longest event-loop stall (perf_hooks.monitorEventLoopDelay, the driver yielding after every
// request as a server would between requests).
//   node --expose-gc dist/bench/micro/agentic-sessions.js [--sessions 10000] [--total 40000] [--cap 65536]
//     [--idle-s 120] [--seed 1]
import { monitorEventLoopDelay, performance, PerformanceObserver } from "node:perf_hooks";
import { setImmediate as yieldLoop } from "node:timers/promises";
import type { FlagSpecs } from "../../src/config/args.js";
import { benchFlags } from "../support/flags.js";
import { SessionTracker, type SessionRequest } from "../../src/routing/index.js";
import { makeRng, type Rng } from "../../src/random/rng.js";
import { IndexedHeap } from "../../src/collections/indexed-heap.js";
import { percentileSorted } from "../../src/workload/stats.js";

const specs: FlagSpecs = {
  sessions: { type: "int", default: 10_000, min: 1, help: "sessions active at once" },
  total: { type: "int", default: 40_000, min: 1, help: "sessions started over the run" },
  cap: { type: "int", default: 65_536, min: 1, help: "the tracker's session cap (the router's default)" },
  "idle-s": { type: "number", default: 120, min: 1, help: "idle expiry, virtual seconds" },
  seed: { type: "int", default: 1, help: "" },
};
const { flags } = benchFlags(specs);
const ACTIVE = Number(flags.sessions);
const TOTAL = Number(flags.total);
const CAP = Number(flags.cap);
const IDLE_MS = Number(flags["idle-s"]) * 1000;

const maybeGc = (globalThis as { gc?: () => void }).gc;
if (!maybeGc) {
  console.error("run with node --expose-gc");
  process.exit(2);
}
const gc: () => void = maybeGc;

type Mode = "header" | "agentic" | "inferred" | "responses";
const MODES: Mode[] = ["header", "agentic", "inferred", "responses"];

interface Live {
  id: number;
  mode: Mode;
  turns: number;
  sent: number;
  abandonAt: number;
  rng: Rng;
  messages: { role: string; content: string }[];
  /** the session its last response was made in (what response affinity would remember) */
  lastSession: string | undefined;
  at: number;
  pos: number;
}

const words = "build test lint fix refactor module error stack trace patch diff commit ".repeat(4000);
const system = `You are a coding agent with these tools and rules. ${words.slice(0, 40_000)}`;
const slice = (rng: Rng, n: number) => {
  const at = Math.floor(rng.next() * (words.length - n));
  return words.slice(at, at + n);
};

function pauseMs(rng: Rng): number {
  const z = Math.sqrt(-2 * Math.log(1 - rng.next())) * Math.cos(2 * Math.PI * rng.next());
  return Math.min(120_000, 8_000 * Math.exp(z));
}

let started = 0;
function start(now: number): Live {
  const id = started++;
  const rng = makeRng(Number(flags.seed), `agentic-sessions-${id}`);
  const turns = 2 + Math.floor(rng.next() * 11);
  return {
    id,
    mode: MODES[id % 4]!,
    turns,
    sent: 0,
    abandonAt: rng.next() < 0.1 ? 1 + Math.floor(rng.next() * (turns - 1)) : Infinity,
    rng,
    messages: [
      { role: "system", content: system },
      { role: "user", content: `agent ${id}: ${slice(rng, 300)}` },
    ],
    lastSession: undefined,
    at: now,
    pos: -1,
  };
}

/** the request a session's next turn is, as the router's ingress would read it */
function requestOf(s: Live): SessionRequest {
  const t = s.sent;
  switch (s.mode) {
    case "header":
      return { header: `sess-${s.id}`, body: { model: "m", messages: s.messages } };
    case "agentic": {
      const parent = s.id % 16 === 1 ? { parent_program_id: `prog-${s.id - 1}` } : {};
      const ctx = { program_id: `prog-${s.id}`, step_id: t, ...parent };
      return { body: { model: "m", messages: s.messages, vllm_xargs: { agentic_context: ctx } } };
    }
    case "inferred":
      return { body: { model: "m", messages: s.messages } };
    case "responses":
      return {
        body: { model: "m", input: slice(s.rng, 200) },
        previousResponse: t > 0 ? { id: `resp_${s.id}_${t - 1}`, session: s.lastSession } : undefined,
      };
  }
}

/** the turn answered and the tool's output appended (the inferred sessions' conversations grow) */
function answered(s: Live): void {
  s.sent++;
  if (s.mode !== "inferred") return;
  s.messages.push({ role: "assistant", content: `step ${s.sent}: ${slice(s.rng, 400)}` });
  s.messages.push({ role: "user", content: `tool output: ${slice(s.rng, 1_200)}` });
}

async function main(): Promise<void> {
  const due = new IndexedHeap<Live>(
    (a, b) => a.at < b.at,
    (s) => s.pos,
    (s, i) => (s.pos = i),
  );
  let tracker: SessionTracker | null = new SessionTracker({ maxSessions: CAP, idleMs: IDLE_MS });
  // arrivals spread over the first minute, so that turns do not march in step
  for (let i = 0; i < ACTIVE; i++) {
    const s = start((i / ACTIVE) * 60_000);
    due.push(s);
  }
  const times: number[] = [];
  let requests = 0;
  let maxSize = 0;
  let keyed = 0;
  let now = 0;
  let longestGcMs = 0;
  const gcs = new PerformanceObserver((list) => {
    for (const e of list.getEntries()) longestGcMs = Math.max(longestGcMs, e.duration);
  });
  gcs.observe({ entryTypes: ["gc"] });
  const eld = monitorEventLoopDelay({ resolution: 1 });
  eld.enable();
  const began = performance.now();
  // until the last session starts: by then the first ones came and went, and ACTIVE are under way
  while (due.size > 0 && started < TOTAL) {
    const s = due.pop()!;
    now = s.at;
    const req = requestOf(s);
    const t0 = performance.now();
    const id = tracker.identify(req, now);
    times.push(performance.now() - t0);
    requests++;
    if (id) keyed++;
    if (tracker.size > maxSize) maxSize = tracker.size;
    if (tracker.size > CAP) throw new Error(`${tracker.size} sessions over the cap ${CAP}`);
    s.lastSession = id?.key;
    answered(s);
    if (s.sent >= s.turns || s.sent >= s.abandonAt) due.push(start(now + pauseMs(s.rng)));
    else {
      s.at = now + pauseMs(s.rng) + 50 + s.rng.next() * 2_000;
      due.push(s);
    }
    // a server handles other work between requests: the loop gets its turn between them
    if (requests % 8 === 0) await yieldLoop();
  }
  const wallS = (performance.now() - began) / 1000;
  eld.disable();
  gcs.disconnect();
  // the tracker's retained heap: with it, then without it (the driver's state is in both)
  const size = tracker.size;
  const indexed = tracker.indexed;
  const { evictions, expired, found } = tracker;
  gc();
  gc();
  const withTracker = process.memoryUsage().heapUsed;
  tracker = null;
  gc();
  gc();
  const without = process.memoryUsage().heapUsed;
  times.sort((a, b) => a - b);
  // numpy's interpolated percentile (this benchmark took the rank above p·n until 2026-11-27)
  const q = (p: number) => percentileSorted(times, p * 100) * 1000;
  const mean = (times.reduce((a, b) => a + b, 0) / times.length) * 1000;
  const row = {
    active_sessions: due.size,
    sessions_started: started,
    requests,
    requests_with_session: keyed,
    virtual_s: Math.round(now / 1000),
    wall_s: Number(wallS.toFixed(1)),
    cap: CAP,
    idle_s: IDLE_MS / 1000,
    sessions_tracked: size,
    sessions_tracked_max: maxSize,
    prompt_ends_indexed: indexed,
    evictions,
    expired,
    found,
    heap_bytes_tracker: withTracker - without,
    heap_bytes_per_session: Math.round((withTracker - without) / size),
    identify_us_mean: Number(mean.toFixed(1)),
    identify_us_p99: Number(q(0.99).toFixed(1)),
    identify_us_p999: Number(q(0.999).toFixed(1)),
    identify_us_max: Number(q(1).toFixed(1)),
    event_loop_delay_p99_ms: Number((eld.percentile(99) / 1e6).toFixed(1)),
    event_loop_delay_max_ms: Number((eld.max / 1e6).toFixed(1)),
    longest_gc_pause_ms: Number(longestGcMs.toFixed(1)),
  };
  console.log(JSON.stringify(row, null, 1));
}

await main();
