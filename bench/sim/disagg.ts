// Disaggregated prefill/decode against the same two engines serving whole requests: two sim engines
// behind the router either both mixed (least-load) or one NixlConnector producer + one consumer (the
// router's P/D flow). Closed-loop clients stream long unique prompts (no prefix-cache help) with
// fixed-length answers. Prints TTFT and inter-token latency percentiles at the client, output
// throughput, and the decode engine's pulled tokens, in modelled time (wall ÷ --time-scale).
// What P/D buys: decode steps no longer share a batch with multi-thousand-token prefills, so the
// inter-token tail shrinks; what it costs: one engine does every prefill, so TTFT queues there.
//
//   npm run build && node dist/bench/sim/disagg.js [--requests 48] [--concurrency 8]
//     [--prompt-words 3000] [--output 64] [--time-scale 2] [--model meta-llama/Llama-3.1-8B-Instruct]
import { Agent, request } from "undici";
import type { FlagSpecs } from "../../src/config/args.js";
import { benchFlags } from "../support/flags.js";
import { startRouter } from "../../src/router/index.js";
import { freePort, spawnCli, waitForHttp, type Spawned } from "../support/cli.js";
import { percentile } from "../../src/workload/stats.js";

const specs: FlagSpecs = {
  requests: { type: "int", default: 48, help: "" },
  concurrency: { type: "int", default: 8, help: "" },
  "prompt-words": { type: "int", default: 3000, help: "" },
  output: { type: "int", default: 64, help: "" },
  "time-scale": { type: "number", default: 2, help: "" },
  model: { type: "string", default: "meta-llama/Llama-3.1-8B-Instruct", help: "" },
};
const f = benchFlags(specs).flags;
const REQUESTS = f.requests as number;
const CONCURRENCY = f.concurrency as number;
const WORDS = f["prompt-words"] as number;
const OUTPUT = f.output as number;
const SCALE = f["time-scale"] as number;
const MODEL = f.model as string;

const VOCAB =
  "time people way year day thing man world life hand part child eye woman place work week case point number group problem fact".split(
    " ",
  );

function prompt(i: number): string {
  let x = (i + 1) * 2654435761;
  const out: string[] = [`Request ${i}:`];
  for (let w = 0; w < WORDS; w++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out.push(VOCAB[(x >>> 0) % VOCAB.length]!);
  }
  return out.join(" ");
}

// percentiles interpolated as numpy does (this benchmark took the rank above p·n until 2026-11-27)
const pct = percentile;

async function metricValue(url: string, name: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  for (const line of text.split("\n"))
    if (line.startsWith(`${name}{`) || line.startsWith(`${name} `))
      return Number(line.slice(line.lastIndexOf(" ") + 1));
  return 0;
}

async function scenario(name: "mixed" | "pd"): Promise<void> {
  const sims: Spawned[] = [];
  const urls: string[] = [];
  const roles = name === "pd" ? ["kv_producer", "kv_consumer"] : [null, null];
  for (const role of roles) {
    const port = await freePort();
    const args = ["sim", MODEL, "--port", String(port), "--host", "127.0.0.1", "--time-scale", String(SCALE)];
    if (role)
      args.push("--kv-transfer-config", JSON.stringify({ kv_connector: "NixlConnector", kv_role: role }));
    sims.push(spawnCli(args, { SWITCHYARD_LOG_LEVEL: "warn" }));
    urls.push(`http://127.0.0.1:${port}`);
  }
  await Promise.all(urls.map((u) => waitForHttp(`${u}/health`, 60_000)));
  const router = await startRouter({
    host: "127.0.0.1",
    port: 0,
    policy: "least-load",
    backends: urls.map((url, i) => ({
      url,
      role: name === "pd" ? (i === 0 ? "prefill" : "decode") : "both",
    })),
    health: { interval: 200 },
    discovery: { metricsInterval: 200 },
  });
  while (!router.router.registry.snapshot().every((v) => v.healthy))
    await new Promise((r) => setTimeout(r, 50));
  const agent = new Agent({ connections: CONCURRENCY * 2 });
  const ttft: number[] = [];
  const itl: number[] = [];
  let tokens = 0;
  let next = 0;
  const started = performance.now();
  const worker = async () => {
    while (next < REQUESTS) {
      const i = next++;
      const t0 = performance.now();
      const res = await request(`${router.url}/v1/completions`, {
        method: "POST",
        dispatcher: agent,
        headers: { "content-type": "application/json" },
        body: JSON.stringify({
          model: MODEL,
          prompt: prompt(i),
          max_tokens: OUTPUT,
          ignore_eos: true,
          stream: true,
        }),
      });
      let last = 0;
      for await (const chunk of res.body as AsyncIterable<Buffer>) {
        const now = performance.now();
        const events = chunk.toString("utf8").split("data: {").length - 1;
        if (events === 0) continue;
        if (last === 0) ttft.push((now - t0) / SCALE / 1000);
        else itl.push((now - last) / SCALE / 1000);
        last = now;
        tokens += events;
      }
      if (res.statusCode !== 200) throw new Error(`request ${i}: status ${res.statusCode}`);
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  const wall = (performance.now() - started) / 1000;
  const pulled =
    name === "pd" ? await metricValue(urls[1]!, "switchyard_sim_nixl_transferred_tokens_total") : 0;
  const ms = (s: number) => (s * 1000).toFixed(1);
  console.log(
    `${name.padEnd(5)}  TTFT p50 ${ms(pct(ttft, 50))} p90 ${ms(pct(ttft, 90))} ms  ITL p50 ${ms(pct(itl, 50))} p99 ${ms(pct(itl, 99))} max ${ms(Math.max(...itl))} ms  ` +
      `output ${(tokens / (wall / SCALE)).toFixed(0)} tok/s (modelled)  wall ${wall.toFixed(1)} s` +
      (name === "pd" ? `  decode engine pulled ${pulled} prompt tokens` : ""),
  );
  await agent.close();
  await router.close(1000);
  for (const s of sims) await s.stop();
}

console.log(
  `${MODEL} on 2 × H100 (modelled), ${REQUESTS} requests, ${CONCURRENCY} concurrent, ~${WORDS}-word unique prompts, ${OUTPUT} output tokens, time scale ${SCALE}`,
);
await scenario("mixed");
await scenario("pd");
