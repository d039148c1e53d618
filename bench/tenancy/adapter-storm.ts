// One tenant's LoRA adapter storm beside another tenant's streams, measured. Two sims (child
// processes, `--enable-lora --max-loras 1 --max-cpu-loras 2`) behind one router process with tenancy
// and a registry of 20 adapters (PEFT folders whose weights are the model's real adapter size, as holes).
// alice streams chats from the base model over 2 connections; bob (`limits.adapterLoadsPerMinute`)
// cycles the 20 adapters over 8 connections. Two runs of `--duration` seconds: alice alone, then alice
// beside bob's storm. Printed: alice's finished streams and the gaps between her chunks (p50, max), bob's
// answers by status (and whether each 429 carried Retry-After), and the loads the router started for
// bob (switchyard_lora_loads_total{tenant="bob"}). Targets: beside the storm alice finishes at least
// 70% of the streams she finishes alone; bob's refusals carry Retry-After; the engines see at most
// the budget + 2 loads from bob (a minute's allowance, and what refills in the run). Exits 1 when one
// is missed. bob pauses `--bob-pause-ms` after a refusal so that his retries measure the engines, not
// how fast a 2-core machine answers 429s. A third run, the reference, repeats the storm through a
// router where bob has no load budget (skipped with `--no-reference`): what the budget saves.
//   node dist/bench/tenancy/adapter-storm.js [--duration 10] [--loads-per-minute 6] [--time-scale 1]
//   [--max-tokens 32] [--bob-pause-ms 100] [--no-reference]
import { mkdirSync, mkdtempSync, rmSync, truncateSync, writeFileSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { Agent, request } from "undici";
import { loraAdapterBytes, DEFAULT_LORA_MODULES } from "../../src/engine/index.js";
import { resolveModel } from "../../src/models/profiles.js";
import { hashKey } from "../../src/tenancy/keys.js";
import { percentile } from "../../src/workload/stats.js";
import { freePort, spawnCli, waitForHttp, type Spawned } from "../support/cli.js";
import { writePeftAdapter } from "../support/peft.js";
import { metricSum } from "../support/stack.js";

const MODEL = "meta-llama/Llama-3.1-8B-Instruct";
const ADAPTERS = 20;
const RANK = 16;
const ALICE_CONNECTIONS = 2;
const BOB_CONNECTIONS = 8;
const keyOf = (t: string) => `sk-storm-${t}-`.padEnd(32, "0");
const ADMIN = "sk-storm-admin-".padEnd(32, "0");

function arg(name: string, dflt: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : dflt;
}
const DURATION_S = arg("duration", 10);
const LOADS_PER_MINUTE = arg("loads-per-minute", 6);
const SCALE = arg("time-scale", 1);
const MAX_TOKENS = arg("max-tokens", 32);
const BOB_PAUSE_MS = arg("bob-pause-ms", 100);
const REFERENCE = !process.argv.includes("--no-reference");

/** the registry: PEFT folders whose weights file is the model's real adapter size (a sparse hole) */
function makeAdapters(): string {
  const dir = mkdtempSync(join(tmpdir(), "sy-storm-lora-"));
  const bytes = loraAdapterBytes(resolveModel(MODEL), RANK);
  for (let i = 0; i < ADAPTERS; i++) {
    const d = join(dir, `storm-${i}`);
    mkdirSync(d, { recursive: true });
    writePeftAdapter(d, {
      rank: RANK,
      hidden: 8,
      layers: 1,
      modules: [...DEFAULT_LORA_MODULES],
      baseModel: MODEL,
      sparse: true,
    });
    truncateSync(join(d, "adapter_model.safetensors"), bytes);
  }
  return dir;
}

interface Alice {
  streams: number;
  failed: number;
  gaps: number[];
  /** ms from sending to the first body chunk */
  ttfts: number[];
}

interface Bob {
  byStatus: Map<number, number>;
  refusalsWithoutRetryAfter: number;
}

async function aliceLoop(url: string, agent: Agent, until: number, out: Alice): Promise<void> {
  const body = JSON.stringify({
    model: MODEL,
    messages: [{ role: "user", content: "stream me a story" }],
    max_tokens: MAX_TOKENS,
    ignore_eos: true,
    stream: true,
  });
  while (performance.now() < until) {
    const sent = performance.now();
    const res = await request(`${url}/v1/chat/completions`, {
      method: "POST",
      dispatcher: agent,
      headers: { "content-type": "application/json", authorization: `Bearer ${keyOf("alice")}` },
      body,
    });
    let last = -1;
    for await (const _ of res.body) {
      const now = performance.now();
      if (last < 0) out.ttfts.push(now - sent);
      else out.gaps.push(now - last);
      last = now;
    }
    if (res.statusCode !== 200) out.failed++;
    else if (performance.now() <= until) out.streams++;
  }
}

async function bobLoop(
  url: string,
  agent: Agent,
  until: number,
  next: () => number,
  out: Bob,
): Promise<void> {
  while (performance.now() < until) {
    const res = await request(`${url}/v1/completions`, {
      method: "POST",
      dispatcher: agent,
      headers: { "content-type": "application/json", authorization: `Bearer ${keyOf("bob")}` },
      body: JSON.stringify({ model: `storm-${next() % ADAPTERS}`, prompt: "hello", max_tokens: 8 }),
    });
    await res.body.dump();
    out.byStatus.set(res.statusCode, (out.byStatus.get(res.statusCode) ?? 0) + 1);
    if (res.statusCode === 429 || res.statusCode === 503) {
      if (res.headers["retry-after"] === undefined) out.refusalsWithoutRetryAfter++;
      await new Promise((r) => setTimeout(r, BOB_PAUSE_MS));
    }
  }
}

async function loadsOf(url: string, tenant: string): Promise<number> {
  const r = await fetch(`${url}/metrics`, { headers: { authorization: `Bearer ${ADMIN}` } });
  const text = await r.text();
  return metricSum(
    text
      .split("\n")
      .filter((l) => !l.startsWith("switchyard_lora_loads_total") || l.includes(`tenant="${tenant}"`))
      .join("\n"),
    "switchyard_lora_loads_total",
  );
}

interface Run {
  alice: Alice;
  bob: Bob | undefined;
  bobLoads: number;
}

async function run(url: string, storm: boolean): Promise<Run> {
  const until = performance.now() + DURATION_S * 1000;
  const alice: Alice = { streams: 0, failed: 0, gaps: [], ttfts: [] };
  const bob: Bob = { byStatus: new Map(), refusalsWithoutRetryAfter: 0 };
  const a = new Agent({ connections: ALICE_CONNECTIONS });
  const b = new Agent({ connections: BOB_CONNECTIONS });
  const loadsBefore = await loadsOf(url, "bob");
  let i = 0;
  try {
    await Promise.all([
      ...Array.from({ length: ALICE_CONNECTIONS }, () => aliceLoop(url, a, until, alice)),
      ...(storm ? Array.from({ length: BOB_CONNECTIONS }, () => bobLoop(url, b, until, () => i++, bob)) : []),
    ]);
  } finally {
    await a.close();
    await b.close();
  }
  return { alice, bob: storm ? bob : undefined, bobLoads: (await loadsOf(url, "bob")) - loadsBefore };
}

function routerConfig(backends: string[], dir: string, metered: boolean): unknown {
  return {
    backends,
    lora: { dir, maxCpuLoras: 2 },
    tenancy: {
      tenants: { alice: {}, bob: metered ? { limits: { adapterLoadsPerMinute: LOADS_PER_MINUTE } } : {} },
      keys: ["alice", "bob"].map((t) => ({ hash: hashKey(keyOf(t)), tenant: t })),
      adminKeys: [hashKey(ADMIN)],
    },
  };
}

async function main(): Promise<void> {
  const dir = makeAdapters();
  const procs: Spawned[] = [];
  const urls: string[] = [];
  try {
    for (let i = 0; i < 2; i++) {
      const port = await freePort();
      procs.push(
        spawnCli(
          [
            ...["sim", MODEL, "--host", "127.0.0.1", "--port", String(port), "--time-scale", String(SCALE)],
            ...["--enable-lora", "--max-loras", "1", "--max-cpu-loras", "2", "--max-lora-rank", String(RANK)],
          ],
          { SWITCHYARD_LOG_LEVEL: "warn", VLLM_ALLOW_RUNTIME_LORA_UPDATING: "True" },
        ),
      );
      urls.push(`http://127.0.0.1:${port}`);
    }
    await Promise.all(urls.map((u, i) => waitForHttp(`${u}/health`, 60_000, 200, procs[i])));
    const startRouter = async (metered: boolean) => {
      const file = join(dir, `router-${metered}.json`);
      writeFileSync(file, JSON.stringify(routerConfig(urls, dir, metered)));
      const port = await freePort();
      const router = spawnCli(["router", `--config=${file}`, "--host=127.0.0.1", `--port=${port}`], {
        SWITCHYARD_LOG_LEVEL: "error",
      });
      const url = `http://127.0.0.1:${port}`;
      await waitForHttp(`${url}/ready`, 60_000, 200, router);
      return { router, url };
    };
    const { router, url } = await startRouter(true);
    console.log(
      `adapter storm: 2 sims (--enable-lora --max-loras 1 --max-cpu-loras 2, --time-scale ${SCALE}), ` +
        `${ADAPTERS} adapters of rank ${RANK}; alice ${ALICE_CONNECTIONS} streams of ${MAX_TOKENS} tokens at a time, ` +
        `bob ${BOB_CONNECTIONS} connections, adapterLoadsPerMinute ${LOADS_PER_MINUTE}; ${DURATION_S} s a run; ` +
        `load average ${loadavg()[0]!.toFixed(2)}`,
    );
    const alone = await run(url, false);
    const storm = await run(url, true);
    await router.stop();
    let unmetered: Run | undefined;
    if (REFERENCE) {
      const ref = await startRouter(false);
      try {
        unmetered = await run(ref.url, true);
      } finally {
        await ref.router.stop();
      }
    }
    const row = (name: string, r: Run) => {
      const g = r.alice.gaps;
      const bob = r.bob;
      const st = (s: number) => bob?.byStatus.get(s) ?? 0;
      const other = bob
        ? [...bob.byStatus].filter(([s]) => ![200, 429, 503].includes(s)).reduce((n, [, c]) => n + c, 0)
        : 0;
      console.log(
        `${name.padEnd(14)} alice streams ${String(r.alice.streams).padStart(5)} (failed ${r.alice.failed}), ` +
          `first chunk p50 ${percentile(r.alice.ttfts, 50).toFixed(0)} ms, p90 ${percentile(r.alice.ttfts, 90).toFixed(0)} ms, ` +
          `gap p50 ${percentile(g, 50).toFixed(1)} ms, mean ${(g.reduce((x, y) => x + y, 0) / Math.max(1, g.length)).toFixed(1)} ms, ` +
          `p99 ${percentile(g, 99).toFixed(0)} ms, max ${Math.max(0, ...g).toFixed(0)} ms` +
          (bob
            ? `; bob 200 ${st(200)}, 429 ${st(429)}, 503 ${st(503)}, other ${other}, ` +
              `refusals without Retry-After ${bob.refusalsWithoutRetryAfter}, loads for bob ${r.bobLoads}`
            : ""),
      );
    };
    row("alone", alone);
    row("beside storm", storm);
    if (unmetered) row("unmetered", unmetered);
    const share = alone.alice.streams > 0 ? storm.alice.streams / alone.alice.streams : 0;
    const maxLoads = Math.ceil(LOADS_PER_MINUTE) + 2;
    const checks: [string, boolean][] = [
      [
        `alice beside the storm finishes ${(share * 100).toFixed(0)}% of her streams alone (target >= 70%)`,
        share >= 0.7,
      ],
      [
        `bob's refusals carry Retry-After (${storm.bob!.refusalsWithoutRetryAfter} without)`,
        storm.bob!.refusalsWithoutRetryAfter === 0 && (storm.bob!.byStatus.get(429) ?? 0) > 0,
      ],
      [`loads for bob: ${storm.bobLoads} (target <= ${maxLoads})`, storm.bobLoads <= maxLoads],
    ];
    for (const [what, ok] of checks) console.log(`${ok ? "PASS" : "MISS"} ${what}`);
    console.log(`load average after: ${loadavg()[0]!.toFixed(2)}`);
    process.exitCode = checks.every(([, ok]) => ok) ? 0 : 1;
  } finally {
    for (const p of procs.reverse()) await p.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
