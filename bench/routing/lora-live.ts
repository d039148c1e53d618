// routing/lora against a live stack: for each policy and request rate, N `switchyard sim` engines with
// LoRA slots and host caches (child processes, --time-scale s) behind a fresh `switchyard router
// --lora-dir DIR --lora-policy P`, sent the fleet simulator's own workload (the same adapter names,
// Zipf draws, Poisson gaps and prompt shape, from the same seed) as streamed completions. Each
// request's TTFT is measured at the client in wall time and divided by s (modelled time, as the fleet
// simulator reports it); loads are the router's switchyard_lora_loads_total. The adapters are PEFT
// folders whose weights are holes (sparse files) of the engine model's adapter size: the sim and the
// router read only their size.
import { spawn, type ChildProcess } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, truncateSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { DEFAULT_LORA_MODULES, loraAdapterBytes, type EngineConfig } from "../../src/engine/index.js";
import { adapterNames, drawRank, zipfCdf, type LoraWorkload } from "../../src/fleet/lora.js";
import { loraSystemPrompts } from "../../src/fleet/lora-run.js";
import { makeRng } from "../../src/random/rng.js";
import { writePeftAdapter } from "../support/peft.js";
import { metricSum } from "../support/stack.js";

const ext = import.meta.url.endsWith(".ts") ? ".ts" : ".js";
const main = fileURLToPath(new URL(`../../src/cli/main${ext}`, import.meta.url));

export interface LiveLoraOptions {
  engines: number;
  engine: EngineConfig;
  gpu: string;
  workload: LoraWorkload;
  /** wall seconds per modelled second on the engines */
  timeScale: number;
  durationS: number;
  warmupS: number;
  seed: number;
  /** the folder of adapters (makeAdapters) */
  dir: string;
}

export interface LiveLoraPoint {
  /** the engines' base URLs, the ids the router knows them by */
  engineIds: string[];
  /** modelled ms; Infinity: not answered */
  ttfts: number[];
  loads: number;
  unloads: number;
  errors: number;
  /** the engines' prefix cache, summed: tokens looked up and found (vllm:prefix_cache_*_total) */
  prefixQueries: number;
  prefixHits: number;
}

/** the workload's adapters as PEFT folders named as the fleet simulator names them, in a fresh temp folder */
export function makeAdapters(engine: EngineConfig, w: LoraWorkload, seed: number): string {
  const dir = mkdtempSync(join(tmpdir(), "sy-bench-lora-"));
  const bytes = loraAdapterBytes(engine.model, w.rank, w.modules);
  const modules = [...(w.modules ?? DEFAULT_LORA_MODULES)];
  for (const name of adapterNames(w.adapters, seed)) {
    const d = join(dir, name);
    mkdirSync(d, { recursive: true });
    writePeftAdapter(d, {
      rank: w.rank,
      hidden: 8,
      layers: 1,
      modules,
      baseModel: engine.model.id,
      sparse: true,
    });
    // the engine model's adapter size, as a hole: what a load reads is priced by it
    truncateSync(join(d, "adapter_model.safetensors"), bytes);
  }
  return dir;
}

export function removeAdapters(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const a = s.address();
      const port = typeof a === "object" && a ? a.port : 0;
      s.close(() => resolve(port));
    });
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function waitOk(url: string, what: string, child: ChildProcess, ms = 60_000): Promise<void> {
  const end = Date.now() + ms;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`${what} exited (${child.exitCode})`);
    try {
      const r = await fetch(url);
      await r.arrayBuffer();
      if (r.ok) return;
    } catch {
      // not yet
    }
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(200);
  }
}

/** every stack process running, stopped with the bench when it is interrupted */
const running = new Set<ChildProcess>();
for (const sig of ["SIGINT", "SIGTERM"] as const)
  process.once(sig, () => {
    for (const c of running) c.kill("SIGKILL");
    process.exit(130);
  });

function child(args: string[], env: Record<string, string> = {}): ChildProcess {
  const c = spawn(process.execPath, [main, ...args], {
    stdio: ["ignore", "ignore", "inherit"],
    env: { ...process.env, SWITCHYARD_LOG_LEVEL: "warn", LOG_LEVEL: "warn", ...env },
  });
  running.add(c);
  c.once("exit", () => running.delete(c));
  return c;
}

async function stopAll(children: ChildProcess[]): Promise<void> {
  await Promise.all(
    children.map(async (c) => {
      if (c.exitCode !== null || c.signalCode !== null) return;
      const exited = new Promise<void>((r) => c.once("exit", () => r()));
      c.kill("SIGTERM");
      const t = setTimeout(() => c.kill("SIGKILL"), 10_000);
      await exited;
      clearTimeout(t);
    }),
  );
}

/** One policy at one rate (modelled requests per second) on a fresh stack. */
export async function runLiveLora(policy: string, rate: number, o: LiveLoraOptions): Promise<LiveLoraPoint> {
  const w = o.workload;
  const lora = o.engine.lora!;
  const children: ChildProcess[] = [];
  const point: LiveLoraPoint = {
    engineIds: [],
    ttfts: [],
    loads: 0,
    unloads: 0,
    errors: 0,
    prefixQueries: 0,
    prefixHits: 0,
  };
  const cfgDir = mkdtempSync(join(tmpdir(), "sy-bench-lora-router-"));
  try {
    const engines: string[] = [];
    for (let i = 0; i < o.engines; i++) {
      const port = await freePort();
      const c = child(
        [
          ...["sim", o.engine.model.id, "--host", "127.0.0.1", "--port", String(port), "--gpu", o.gpu],
          ...["--enable-lora", "--max-loras", String(lora.maxLoras)],
          ...["--max-cpu-loras", String(lora.maxCpuLoras), "--max-lora-rank", String(lora.maxLoraRank)],
          ...["--time-scale", String(o.timeScale)],
        ],
        { VLLM_ALLOW_RUNTIME_LORA_UPDATING: "True" },
      );
      children.push(c);
      engines.push(`http://127.0.0.1:${port}`);
    }
    point.engineIds = engines;
    for (let i = 0; i < engines.length; i++) await waitOk(`${engines[i]}/health`, `sim ${i}`, children[i]!);
    const routerPort = await freePort();
    const cfgFile = join(cfgDir, "router.json");
    // the fleet simulator's router scrapes every 100 modelled ms
    writeFileSync(
      cfgFile,
      JSON.stringify({
        lora: { dir: o.dir, policy, maxCpuLoras: lora.maxCpuLoras },
        discovery: { metricsInterval: Math.max(50, Math.round(100 * o.timeScale)) },
      }),
    );
    const args = ["router", "--host", "127.0.0.1", "--port", String(routerPort), "--config", cfgFile];
    for (const e of engines) args.push("--backend", e);
    const router = child(args);
    children.push(router);
    const url = `http://127.0.0.1:${routerPort}`;
    await waitOk(`${url}/ready`, "router", router);
    await sleep(1000 + 300 * o.timeScale); // every engine scraped (max_lora) before the first request
    // the router's first request loads the base model's tokenizer: not in the measured run
    for (let i = 0; i < o.engines; i++) {
      const r = await fetch(`${url}/v1/completions`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ model: o.engine.model.id, prompt: [11, 12, 13 + i], max_tokens: 1 }),
      });
      await r.arrayBuffer();
    }

    // the fleet simulator's arrivals: the same names, draws and gaps from the same seed
    const names = adapterNames(w.adapters, o.seed);
    const cdf = zipfCdf(w.adapters, w.zipf);
    const rng = makeRng(o.seed, "lora-arrivals");
    const sys = Array.from({ length: w.systemPrompts }, (_, p) =>
      Array.from({ length: w.systemPromptTokens }, (_, i) => 1000 + ((p * 7919 + i * 104729) % 100000)),
    );
    const systemOf = loraSystemPrompts(o.seed, w.systemPrompts);
    const inflight: Promise<void>[] = [];
    const t0 = performance.now();
    let t = 0;
    for (let seq = 0; t < o.durationS; seq++) {
      const name = names[drawRank(cdf, rng.next())]!;
      const at = t;
      const wait = t0 + at * o.timeScale * 1000 - performance.now();
      if (wait > 1) await sleep(wait);
      const prompt = [...sys[systemOf()]!];
      // unique per request, inside the base model's vocabulary
      for (let i = 0; i < w.userTokens; i++) prompt.push(20_000 + ((seq * 131 + i * 31) % 20_000));
      const measured = at >= o.warmupS;
      inflight.push(
        send(url, name, prompt, w.outputTokens, o.timeScale, 120).then(
          (ms) => {
            if (measured) point.ttfts.push(ms);
          },
          () => {
            point.errors++;
            if (measured) point.ttfts.push(Infinity);
          },
        ),
      );
      t += rng.exp(1 / rate);
    }
    await Promise.all(inflight);
    const m = await (await fetch(`${url}/metrics`)).text();
    point.loads = metricSum(m, "switchyard_lora_loads_total");
    point.unloads = metricSum(m, "switchyard_lora_unloads_total");
    for (const e of engines) {
      const em = await (await fetch(`${e}/metrics`)).text();
      point.prefixQueries += metricSum(em, "vllm:prefix_cache_queries_total");
      point.prefixHits += metricSum(em, "vllm:prefix_cache_hits_total");
    }
    return point;
  } finally {
    await stopAll(children);
    rmSync(cfgDir, { recursive: true, force: true });
  }
}

/** A streamed completion: its TTFT in modelled ms (Infinity past `limitS` modelled seconds). */
async function send(
  url: string,
  model: string,
  prompt: number[],
  maxTokens: number,
  timeScale: number,
  limitS: number,
): Promise<number> {
  const start = performance.now();
  const res = await fetch(`${url}/v1/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ model, prompt, max_tokens: maxTokens, ignore_eos: true, stream: true }),
    signal: AbortSignal.timeout(limitS * timeScale * 1000 + 30_000),
  });
  if (res.status !== 200) {
    await res.arrayBuffer();
    throw new Error(`${res.status}`);
  }
  let first = Infinity;
  const dec = new TextDecoder();
  for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
    if (first === Infinity && dec.decode(chunk).includes('"text"')) first = performance.now();
  }
  return (first - start) / timeScale;
}
