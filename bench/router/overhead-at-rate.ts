// Routing cost at rate: what the router adds to each request, and the CPU it burns, when it is driven at
// a fixed open-loop rate (100, 250, 500, 1,000 req/s by default) with long prompts that share prefixes
// against fast engines that publish real KV events (bench/support/fakes/kv-upstream.ts: answered at once,
// events over ZMQ as vLLM 0.32 writes them), so that the router's own work - tokenizing and hashing each
// prompt for exact KV routing, the index lookups, pricing every engine with the TTFT model, the relay -
// is what is measured. Per policy (round-robin and the default, predictive), prompt size and rate, the
// same workload is sent straight to the engines just before the router's run, and:
//   added_ms (p50/p95/p99): what the router adds, from stamps it cannot move. Each answer carries the
//     engine's arrival time and how long it held the request (`x-bench-engine`, on CLOCK_MONOTONIC,
//     which the client shares); a request's time outside the engine is its end-to-end time less that
//     hold, and added = that percentile through the router − the same percentile straight to the
//     engines. The engines' own time (and its jitter) is out of both; added_e2e_ms keeps the plain
//     end-to-end difference, router_inbound_ms the leg before the engine, where the decision lies.
//   cpu_us_per_req: CPU per completed request of the router (/proc, its workers included), the load
//     client and the engines' process, over the measured window: the figure a busy machine moves least.
//   router_cores, and the knee: the first rate at which the router stops keeping up (CPU near the
//     machine's cores, completions short of the rate, errors) or its added p95 breaks away from the
//     lowest rate's.
// The harness is kept light, since on a small machine it shares the cores with the router: bodies are
// a pre-encoded head per shared prefix and a tail of words (no JSON to write), the engines read the
// prompt without parsing the body and answer from a template, the shared prefix is named in a body
// field the router relays (a header would not pass it: behind the router the engines then tokenized and
// hashed every whole prompt, and loaded the machine far more than in the direct run). Latency is timed
// from the client's actual send; the client's lateness against the schedule is reported beside it
// (client_lag_p99_ms), as a rate it could not hold shows in achieved_rps.
// Started by bench/router/overhead.ts (`npm run bench -- router/overhead`), the load client in its own
// process so that its CPU does not mix with the router's; `--cpu-prof DIR` profiles the router, the
// engines and each client run.
import { spawn, type ChildProcess } from "node:child_process";
import { writeFileSync } from "node:fs";
import { availableParallelism, loadavg } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { Pool } from "undici";
import { freePort } from "../support/cli.js";
import { knees, type Pct, type Run } from "../support/rate-knee.js";
import { waitHttp } from "../support/router-harness.js";
import { resolveModel } from "../../src/models/profiles.js";
import { tokenizerForModel } from "../../src/tokenizer/index.js";
import { mulberry32 } from "../../src/random/rng.js";
import { cpuMs } from "../support/stack.js";

const ext = import.meta.url.endsWith(".ts") ? ".ts" : ".js";
const here = (rel: string) => fileURLToPath(new URL(rel + ext, import.meta.url));
/** ms on process.hrtime's clock (CLOCK_MONOTONIC): the engines stamp their answers on the same clock */
const nowMs = () => Number(process.hrtime.bigint()) / 1e6;
const MODEL = "meta-llama/Llama-3.1-8B-Instruct";
/** share of a prompt's tokens in its group's shared prefix; the rest is unique to the request */
const SHARED = 7 / 8;
/** requests in flight the client allows before it counts a send as refused (the router has fallen over) */
const MAX_IN_FLIGHT = 4096;
/** the longest a request may take */
const REQUEST_TIMEOUT_MS = 30_000;
/** the longest the client waits for stragglers after its last send: those still out then count as errors */
const STRAGGLERS_MS = 5_000;
/**
 * a router that completes less than this share of a rate is not driven at the higher rates (its knee is
 * found), except those up to ALWAYS_RUN_UP_TO req/s, which are always run (500 req/s is the one the
 * docs quote, and a busy machine can fail a lower one by chance)
 */
const FELL_OVER = 0.5;
const ALWAYS_RUN_UP_TO = 500;

export interface Options {
  rates: number[];
  promptTokens: number[];
  policies: string[];
  durationS: number;
  warmupS: number;
  engines: number;
  groups: number;
  workers: string;
  /** more router flags, as one string split at spaces (`--no-prompt-thread`) */
  routerArgs: string[];
  json: string;
  /** a folder for the router's --cpu-prof profiles (one per policy), or "" */
  cpuProf: string;
}

export function parseOptions(argv: string[]): Options {
  const get = (f: string, d: string) => {
    const i = argv.indexOf(f);
    return i >= 0 && argv[i + 1] !== undefined ? argv[i + 1]! : d;
  };
  const nums = (s: string) => s.split(",").filter(Boolean).map(Number);
  const o: Options = {
    rates: nums(get("--rates", "100,250,500,1000")),
    promptTokens: nums(get("--prompt-tokens", "1024,4096,16384")),
    policies: get("--policies", "round-robin,predictive").split(",").filter(Boolean),
    durationS: Number(get("--duration", "4")),
    warmupS: Number(get("--warmup", "1")),
    engines: Number(get("--engines", "4")),
    groups: Number(get("--groups", "16")),
    // one process unless asked: the policies' cost side by side on one process shape (the default,
    // auto, would give round-robin a worker per core and predictive one process)
    workers: get("--workers", "1"),
    routerArgs: get("--router-args", "").split(" ").filter(Boolean),
    json: get("--json", ""),
    cpuProf: get("--cpu-prof", ""),
  };
  const bad = [...o.rates, ...o.promptTokens].some((x) => !Number.isFinite(x) || x <= 0);
  if (bad || !(o.durationS > 0) || !(o.warmupS >= 0) || !(o.engines >= 1) || !(o.groups >= 1))
    throw new Error(
      "router/overhead: --rates, --prompt-tokens, --duration, --engines and --groups must be positive",
    );
  o.rates.sort((a, b) => a - b);
  return o;
}

// ---- the load client (its own process) ----

const SYLLABLES = "ka lo mi ra ten sor vel an ti mun dor el pa qui ber os lin gar fe tu".split(" ");

/** Prompts of `tokens` tokens (the BOS included): one of `groups` shared prefixes, then a unique tail. */
export class PromptMaker {
  private readonly words: { w: string; lead: number; inner: number }[] = [];
  private readonly prefixes: string[] = [];
  private readonly prefixTokens: number[] = [];
  private readonly next: () => number;

  constructor(
    private readonly tokens: number,
    groups: number,
    seed: number,
  ) {
    const tk = tokenizerForModel(resolveModel(MODEL));
    const r = mulberry32(1);
    const seen = new Set<string>();
    while (this.words.length < 600) {
      let w = "";
      const n = 1 + Math.floor(r() * 3);
      for (let i = 0; i < n; i++) w += SYLLABLES[Math.floor(r() * SYLLABLES.length)]!;
      if (seen.has(w)) continue;
      seen.add(w);
      this.words.push({ w, lead: tk.encode(w, false).length, inner: tk.encode(" " + w, false).length });
    }
    const target = Math.max(1, Math.round(tokens * SHARED));
    for (let g = 0; g < groups; g++) {
      const pr = mulberry32(1000 + g);
      let text = "";
      let n = tk.bosTokenId !== null ? 1 : 0;
      while (n < target) {
        const x = this.words[Math.floor(pr() * this.words.length)]!;
        text += text ? " " + x.w : x.w;
        n += text === x.w ? x.lead : x.inner;
      }
      this.prefixes.push(text);
      this.prefixTokens.push(n);
    }
    this.next = mulberry32(seed);
  }

  /** the next request's group and prompt */
  make(): { group: number; prefixChars: number; prompt: string } {
    const { group, tail } = this.nextTail();
    const prefix = this.prefixes[group]!;
    return { group, prefixChars: prefix.length, prompt: prefix + tail };
  }

  /**
   * The next request's completion body as `make()`'s prompt would give it through JSON.stringify, built
   * from its group's head encoded once: one copy of the prefix's bytes a request, no JSON to write.
   */
  body(): { group: number; prefixChars: number; promptTokens: number; body: Buffer } {
    const { group, tail, tokens } = this.nextTail();
    const prefix = this.prefixes[group]!;
    this.heads[group] ??= Buffer.from(`{"model":${JSON.stringify(MODEL)},"prompt":"${prefix}`);
    // the shared prefix's group and length, and the prompt's tokens, for the engines (kv-upstream.ts)
    const rest = `${tail}","max_tokens":1,"temperature":0,"bench_prefix":"${group}:${prefix.length}:${tokens}"}`;
    return {
      group,
      prefixChars: prefix.length,
      promptTokens: tokens,
      body: Buffer.concat([this.heads[group], Buffer.from(rest, "latin1")]),
    };
  }

  private readonly heads: Buffer[] = [];

  /** a group, and the words after its prefix (" w1 w2 ..."): at least one, so no two prompts are the same */
  private nextTail(): { group: number; tail: string; tokens: number } {
    const group = Math.floor(this.next() * this.prefixes.length);
    let n = this.prefixTokens[group]!;
    let tail = "";
    do {
      const x = this.words[Math.floor(this.next() * this.words.length)]!;
      tail += " " + x.w;
      n += x.inner;
    } while (n < this.tokens);
    return { group, tail, tokens: n };
  }
}

export interface ClientResult {
  sent: number;
  ok: number;
  errors: number;
  /** requests measured (sent after the warm-up) */
  n: number;
  /** end to end, from the client's send to the last byte of the answer */
  p50: number;
  p95: number;
  p99: number;
  /** the time outside the engine: end to end less the time the engine held the request (its own stamps) */
  outside: Pct;
  /** client's send → the engine has the request (the router's decision and relay lie here) */
  inbound: Pct;
  /** completions per second over the measured window */
  achieved: number;
  /** how late the client sent, p99 ms (its own lag on a busy machine) */
  lagP99: number;
  /** the watched process's CPU over the measured window, in cores (null: none watched) */
  cores: number | null;
  /** CPU per request completed in the window, µs: the watched router, this client, the engines' process */
  cpuUsPerReq: { router: number | null; client: number; engines: number | null };
}

export async function client(args: {
  urls: string[];
  rate: number;
  durationS: number;
  warmupS: number;
  tokens: number;
  groups: number;
  seed: number;
  cpuPid?: number;
  enginesPid?: number;
}): Promise<ClientResult> {
  const maker = new PromptMaker(args.tokens, args.groups, args.seed);
  const pools = args.urls.map(
    (u) =>
      new Pool(new URL(u).origin, {
        connections: 256,
        pipelining: 1,
        keepAliveTimeout: 60_000,
        headersTimeout: REQUEST_TIMEOUT_MS,
        bodyTimeout: REQUEST_TIMEOUT_MS,
      }),
  );
  const total = Math.round(args.rate * (args.warmupS + args.durationS));
  const warm = Math.round(args.rate * args.warmupS);
  const lat: number[] = [];
  const outside: number[] = [];
  const inbound: number[] = [];
  const lag: number[] = [];
  let ok = 0;
  let errors = 0;
  let inFlight = 0;
  let measuredDone = 0;
  let sent = 0;
  const t0 = performance.now() + 20;
  const at = (i: number) => t0 + (i * 1000) / args.rate;
  const fire = (i: number) => {
    const { body } = maker.body();
    if (inFlight >= MAX_IN_FLIGHT) {
      errors++;
      return;
    }
    const pool = pools[i % pools.length]!;
    const start = performance.now();
    const sentAt = nowMs();
    if (i >= warm) lag.push(start - at(i));
    inFlight++;
    sent++;
    void pool
      .request({
        path: "/v1/completions",
        method: "POST",
        headers: { "content-type": "application/json" },
        body,
      })
      .then(async (r) => {
        for await (const _ of r.body) void _;
        if (r.statusCode !== 200) throw new Error(`status ${r.statusCode}`);
        const doneAt = nowMs();
        const ms = performance.now() - start;
        ok++;
        if (i >= warm) {
          lat.push(ms);
          // the engine's stamps: when it had the request, how long it held it (shared monotonic clock)
          const stamp = r.headers["x-bench-engine"];
          const comma = typeof stamp === "string" ? stamp.indexOf(",") : -1;
          if (comma > 0) {
            const arrived = Number((stamp as string).slice(0, comma));
            const held = Number((stamp as string).slice(comma + 1));
            outside.push(doneAt - sentAt - held);
            inbound.push(arrived - sentAt);
          }
          measuredDone++;
        }
      })
      .catch(() => errors++)
      .finally(() => inFlight--);
  };
  let cpu0: number | undefined;
  let eng0: number | undefined;
  let own0 = process.cpuUsage();
  let w0 = 0;
  let i = 0;
  await new Promise<void>((resolve) => {
    const tick = () => {
      const now = performance.now();
      while (i < total && at(i) <= now) {
        if (i === warm) {
          cpu0 = cpuMs(args.cpuPid);
          eng0 = cpuMs(args.enginesPid);
          own0 = process.cpuUsage();
          w0 = performance.now();
        }
        fire(i++);
      }
      if (i < total) setTimeout(tick, Math.max(0, Math.min(5, at(i) - performance.now())));
      else resolve();
    };
    setTimeout(tick, Math.max(0, t0 - performance.now()));
  });
  const sendEnd = performance.now();
  const cpu1 = cpuMs(args.cpuPid);
  const eng1 = cpuMs(args.enginesPid);
  const own = process.cpuUsage(own0);
  const doneAtSendEnd = measuredDone;
  const wait0 = performance.now();
  while (inFlight > 0 && performance.now() - wait0 < STRAGGLERS_MS)
    await new Promise((r) => setTimeout(r, 10));
  // still out after the wait: failed (counted before the pools' destruction fails them again)
  const failed = errors + inFlight;
  await Promise.all(pools.map((p) => p.destroy()));
  for (const xs of [lat, outside, inbound, lag]) xs.sort((a, b) => a - b);
  const q = (xs: number[], p: number) => xs[Math.min(xs.length - 1, Math.floor(p * xs.length))] ?? NaN;
  const pct = (xs: number[]): Pct => ({ p50: q(xs, 0.5), p95: q(xs, 0.95), p99: q(xs, 0.99) });
  const window = (sendEnd - w0) / 1000;
  const perReq = (ms: number) => (doneAtSendEnd > 0 ? Math.round((ms * 1000) / doneAtSendEnd) : NaN);
  return {
    sent,
    ok,
    errors: failed,
    n: lat.length,
    p50: q(lat, 0.5),
    p95: q(lat, 0.95),
    p99: q(lat, 0.99),
    achieved: window > 0 ? doneAtSendEnd / window : 0,
    outside: pct(outside),
    inbound: pct(inbound),
    lagP99: q(lag, 0.99),
    cores: cpu0 !== undefined && cpu1 !== undefined && window > 0 ? (cpu1 - cpu0) / 1000 / window : null,
    cpuUsPerReq: {
      router: cpu0 !== undefined && cpu1 !== undefined ? perReq(cpu1 - cpu0) : null,
      client: perReq((own.user + own.system) / 1000),
      engines: eng0 !== undefined && eng1 !== undefined ? perReq(eng1 - eng0) : null,
    },
  };
}

// ---- the run ----

function runClient(args: Parameters<typeof client>[0], prof = ""): Promise<ClientResult> {
  return new Promise((resolve, reject) => {
    const ch = spawn(
      process.execPath,
      [
        ...process.execArgv,
        ...profFlags(prof, `client-${args.tokens}-${args.rate}-${args.cpuPid ? "router" : "direct"}`),
        here("./overhead"),
        "rate-client",
        JSON.stringify(args),
      ],
      { stdio: ["ignore", "pipe", "inherit"] },
    );
    let out = "";
    ch.stdout!.on("data", (b: Buffer) => (out += b.toString()));
    ch.on("exit", (code) =>
      code === 0
        ? // a percentile of no completed request went through JSON as null: NaN again, null in the report
          resolve(JSON.parse(out, (_k, v: unknown) => (v === null ? NaN : v)) as ClientResult)
        : reject(new Error(`load client exit ${code}`)),
    );
  });
}

/**
 * node's flags for profiles of `name` in the folder `dir/name` ("" : none): one file per thread under
 * node's own names (pid, thread id), so the router's prompt thread keeps its profile beside the loop's
 */
const profFlags = (dir: string, name: string) =>
  dir ? ["--cpu-prof", "--cpu-prof-dir", join(dir, name)] : [];

function spawnEngines(ports: number[], prof: string): Promise<ChildProcess> {
  return new Promise((resolve, reject) => {
    const ch = spawn(
      process.execPath,
      [
        ...process.execArgv,
        ...profFlags(prof, "engines"),
        here("../support/fakes/kv-upstream"),
        ports.join(","),
        MODEL,
      ],
      { stdio: ["ignore", "pipe", "inherit"] },
    );
    let out = "";
    ch.stdout!.on("data", (b: Buffer) => {
      out += b.toString();
      if (out.includes("ready")) resolve(ch);
    });
    ch.on("exit", (code) => reject(new Error(`kv-upstream exit ${code}`)));
  });
}

function spawnRouter(
  port: number,
  urls: string[],
  policy: string,
  workers: string,
  prof: string,
  more: readonly string[],
): ChildProcess {
  const node = profFlags(prof, `router-${policy}`);
  const args = ["router", "--host", "127.0.0.1", "--port", String(port), "--policy", policy];
  for (const u of urls) args.push("--backend", u);
  if (workers) args.push("--workers", workers);
  args.push(...more);
  return spawn(process.execPath, [...process.execArgv, ...node, here("../../src/cli/main"), ...args], {
    stdio: "ignore",
    env: { ...process.env, SWITCHYARD_LOG_LEVEL: "warn" },
  });
}

/**
 * what the router's /metrics say of KV routing: engines routed from their events, predicted and prompt
 * tokens, and the long prompts worked out on the prompt thread and on the event loop
 */
async function routerKv(url: string): Promise<{
  kvEngines: number;
  predicted: number;
  prompt: number;
  onThread: number;
  onLoop: number;
}> {
  const r = await fetch(`${url}/metrics`);
  const text = await r.text();
  const out = { kvEngines: 0, predicted: 0, prompt: 0, onThread: 0, onLoop: 0 };
  for (const line of text.split("\n")) {
    const v = Number(line.slice(line.lastIndexOf(" ") + 1));
    if (line.startsWith("switchyard_routing_engine_kv_mode{")) out.kvEngines += v === 1 ? 1 : 0;
    else if (line.startsWith("switchyard_routing_predicted_cached_tokens_total{")) out.predicted += v;
    else if (line.startsWith("switchyard_routing_prompt_tokens_total{")) out.prompt += v;
    else if (line.startsWith('switchyard_routing_long_prompts_total{by="thread"}')) out.onThread += v;
    else if (line.startsWith('switchyard_routing_long_prompts_total{by="loop"}')) out.onLoop += v;
  }
  return out;
}

async function resetEngines(url: string): Promise<void> {
  const r = await fetch(`${url}/bench/reset`, { method: "POST", body: "" });
  await r.arrayBuffer();
}

const pct = (x: Pct): Pct => ({ p50: x.p50, p95: x.p95, p99: x.p99 });
const minus = (a: Pct, b: Pct): Pct => ({ p50: a.p50 - b.p50, p95: a.p95 - b.p95, p99: a.p99 - b.p99 });
const round = (x: number) => Math.round(x * 100) / 100;
/** the share of long prompts the event loop worked out itself (null: none was long) */
const share = (loop: number, thread: number) => (loop + thread > 0 ? round(loop / (loop + thread)) : null);
const PCT_FIELDS = [
  "added_ms",
  "added_e2e_ms",
  "router_ms",
  "direct_ms",
  "router_outside_ms",
  "direct_outside_ms",
  "router_inbound_ms",
  "direct_inbound_ms",
] as const;

export async function main(argv: string[]): Promise<void> {
  const o = parseOptions(argv);
  const cores = availableParallelism();
  const ports: number[] = [];
  for (let i = 0; i < o.engines; i++) ports.push(await freePort());
  const urls = ports.map((p) => `http://127.0.0.1:${p}`);
  const engines = await spawnEngines(ports, o.cpuProf);
  const children: ChildProcess[] = [engines];
  const load0 = loadavg()[0]!;
  console.log(
    `router/overhead at rate: ${o.engines} fast engines publishing KV events, ${o.groups} shared prefixes (${Math.round(SHARED * 100)}% of each prompt), ${o.warmupS}+${o.durationS} s per cell; ${cores} cores, load ${load0.toFixed(2)}`,
  );
  console.log(
    "policy        tokens   rate  achieved  direct p95  router p50/p95/p99      added p50/p95/p99     cores  errors  CPU µs/req router/client/engines  on loop",
  );
  const seedOf = (tokens: number, rate: number, pass: number) => tokens * 7 + rate * 13 + pass;
  const runs: Run[] = [];
  try {
    await Promise.all(urls.map((u) => waitHttp(`${u}/health`)));
    for (const policy of o.policies) {
      const port = await freePort();
      const router = spawnRouter(port, urls, policy, o.workers, o.cpuProf, o.routerArgs);
      children.push(router);
      const url = `http://127.0.0.1:${port}`;
      await waitHttp(`${url}/ready`);
      // the router subscribes to each engine's events once it has read /version and /kv_event_sources
      let kv = await routerKv(url);
      for (let i = 0; i < 150 && policy !== "round-robin" && kv.kvEngines < o.engines; i++) {
        await new Promise((r) => setTimeout(r, 100));
        kv = await routerKv(url);
      }
      if (policy !== "round-robin")
        console.log(`${policy}: ${kv.kvEngines} of ${o.engines} engines routed from their KV events`);
      for (const tokens of o.promptTokens) {
        let fellOver = false;
        for (const rate of o.rates) {
          if (fellOver && rate > ALWAYS_RUN_UP_TO) {
            console.log(
              `${policy.padEnd(12)} ${String(tokens).padStart(7)} ${String(rate).padStart(6)}  not run: a lower rate was not held`,
            );
            continue;
          }
          const c = {
            urls: [url],
            rate,
            durationS: o.durationS,
            warmupS: o.warmupS,
            tokens,
            groups: o.groups,
          };
          // the same workload straight to the engines just before, so that the machine's load drifts little between the two
          await resetEngines(urls[0]!);
          const d = await runClient(
            { ...c, urls, seed: seedOf(tokens, rate, 0), enginesPid: engines.pid },
            o.cpuProf,
          );
          await resetEngines(urls[0]!);
          const kv0 = await routerKv(url);
          const r = await runClient(
            { ...c, seed: seedOf(tokens, rate, 1), cpuPid: router.pid, enginesPid: engines.pid },
            o.cpuProf,
          );
          const kv1 = await routerKv(url);
          const run: Run = {
            policy,
            rate,
            prompt_tokens: tokens,
            added_ms: minus(r.outside, d.outside),
            router_cores: r.cores === null ? null : round(r.cores),
            router_cpu_ms_per_req:
              r.cores === null || r.achieved <= 0 ? null : round((r.cores * 1000) / r.achieved),
            cpu_us_per_req: r.cpuUsPerReq,
            direct_cpu_us_per_req: { client: d.cpuUsPerReq.client, engines: d.cpuUsPerReq.engines },
            added_e2e_ms: minus(pct(r), pct(d)),
            router_ms: pct(r),
            direct_ms: pct(d),
            router_outside_ms: r.outside,
            direct_outside_ms: d.outside,
            router_inbound_ms: r.inbound,
            direct_inbound_ms: d.inbound,
            achieved_rps: round(r.achieved),
            errors: r.errors,
            client_lag_p99_ms: round(r.lagP99),
            direct_achieved_rps: round(d.achieved),
            harness_bound: d.achieved < 0.95 * rate,
            predicted_cached_share:
              kv1.prompt > kv0.prompt
                ? round((kv1.predicted - kv0.predicted) / (kv1.prompt - kv0.prompt))
                : null,
            long_prompts_on_loop_share: share(kv1.onLoop - kv0.onLoop, kv1.onThread - kv0.onThread),
          };
          for (const k of PCT_FIELDS)
            run[k] = { p50: round(run[k].p50), p95: round(run[k].p95), p99: round(run[k].p99) };
          runs.push(run);
          fellOver = r.achieved < FELL_OVER * rate;
          const f = (x: number) => x.toFixed(1);
          console.log(
            `${policy.padEnd(12)} ${String(tokens).padStart(7)} ${String(rate).padStart(6)} ${r.achieved.toFixed(0).padStart(9)} ${f(d.p95).padStart(11)}  ${`${f(r.p50)}/${f(r.p95)}/${f(r.p99)}`.padStart(20)}  ${`${f(run.added_ms.p50)}/${f(run.added_ms.p95)}/${f(run.added_ms.p99)}`.padStart(20)}  ${(r.cores ?? NaN).toFixed(2).padStart(6)}  ${String(r.errors).padStart(6)}  ${r.cpuUsPerReq.router}/${r.cpuUsPerReq.client}/${r.cpuUsPerReq.engines}${run.long_prompts_on_loop_share === null ? "" : `  ${Math.round(run.long_prompts_on_loop_share * 100)}%`}`,
          );
        }
      }
      router.kill("SIGTERM");
      // a profile is written as the router exits
      if (o.cpuProf) await new Promise((r) => router.once("exit", r));
    }
  } finally {
    for (const c of children) c.kill("SIGTERM");
    // the engines write their profile as they exit
    if (o.cpuProf) await new Promise((r) => (engines.exitCode !== null ? r(null) : engines.once("exit", r)));
  }
  const knee = knees(runs, cores);
  for (const k of knee)
    console.log(
      `knee ${k.policy} ${k.prompt_tokens} tokens: ${k.rate === null ? "-" : `${k.rate} req/s`} (${k.reason})`,
    );
  const load1 = loadavg()[0]!;
  console.log(`load average ${load0.toFixed(2)} at the start, ${load1.toFixed(2)} at the end`);
  if (o.json) {
    writeFileSync(
      o.json,
      JSON.stringify(
        {
          runs,
          knee,
          machine: { cores, load_start: round(load0), load_end: round(load1), node: process.version },
          options: {
            duration_s: o.durationS,
            warmup_s: o.warmupS,
            engines: o.engines,
            groups: o.groups,
            shared_prefix: SHARED,
            workers: o.workers || null,
            router_args: o.routerArgs,
          },
        },
        null,
        2,
      ) + "\n",
    );
    console.log(`wrote ${o.json}`);
  }
}
