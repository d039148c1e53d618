// What a migration costs the client: the stall a stream sees when its engine dies mid-answer and the
// router continues it on another engine, against the stream's own inter-token gap. Two simulated
// engines (real time, the modelled GPU's prefill and decode times) behind a router; for each prompt
// length, streams run on both engines and one engine is SIGKILLed once its streams are under way.
// The stall is the gap between the last token before the break and the first one after it, as the
// client reads them; it holds the new engine's prefill of the prompt and everything generated so
// far (its prefix cache has never seen them), the connection reset's detection and the router's
// work. Also reported: the router's own switchyard_migration_seconds (break → first byte relayed).
//   node --import tsx bench/router/migration.ts [--model meta-llama/Llama-3.1-8B-Instruct]
//     [--prompt-lens 256,2048,8192] [--streams 4] [--after 64] [--max-tokens 256] [--time-scale 1]
import { spawn, type ChildProcess } from "node:child_process";
import { fileURLToPath } from "node:url";
import { freePort } from "../support/cli.js";
import { startRouter } from "../../src/router/index.js";
import { readStream, type StreamRead } from "../support/sse-client.js";
import { waitHttp } from "../support/router-harness.js";
import { percentile } from "../../src/workload/stats.js";

const argv = process.argv.slice(2);
const get = (f: string, d: string) => (argv.includes(f) ? argv[argv.indexOf(f) + 1]! : d);
const model = get("--model", "meta-llama/Llama-3.1-8B-Instruct");
const promptLens = get("--prompt-lens", "256,2048,8192").split(",").map(Number);
const streamsPerEngine = Number(get("--streams", "4"));
const after = Number(get("--after", "64"));
const maxTokens = Number(get("--max-tokens", "256"));
const timeScale = get("--time-scale", "1");

const ext = import.meta.url.endsWith(".ts") ? ".ts" : ".js";
const cli = fileURLToPath(new URL(`../../src/cli/main${ext}`, import.meta.url));

function startSim(port: number): ChildProcess {
  return spawn(
    process.execPath,
    [
      ...process.execArgv,
      cli,
      "sim",
      model,
      "--host",
      "127.0.0.1",
      "--port",
      String(port),
      "--time-scale",
      timeScale,
      "--seed",
      "1",
    ],
    { stdio: "ignore", env: { ...process.env, SWITCHYARD_LOG_LEVEL: "warn" } },
  );
}

/** A streamed completion of the bench's shape, read event by event with each event's arrival time. */
const stream = (url: string, prompt: string): StreamRead =>
  readStream(url, { model, prompt, max_tokens: maxTokens, ignore_eos: true }, "completion");

// quantile q (0..1), interpolated as numpy does (this benchmark took the rank above q·n until 2026-11-27)
const quantile = (a: number[], q: number) => percentile(a, q * 100);

async function main(): Promise<void> {
  const ports = [await freePort(), await freePort()];
  const urls = ports.map((p) => `http://127.0.0.1:${p}`);
  const sims: ChildProcess[] = ports.map((p) => startSim(p));
  await Promise.all(urls.map((u) => waitHttp(`${u}/health`)));
  const router = await startRouter({
    host: "127.0.0.1",
    port: 0,
    backends: urls,
    policy: "round-robin",
    health: { interval: 200, timeout: 500 },
  });
  const rows: string[] = [];
  try {
    for (const len of promptLens) {
      // a fresh pair each round: nothing of an earlier round's prompts in either prefix cache
      await waitUntilHealthy(router.router.registry);
      const words = Array.from({ length: len }, (_, i) => ` w${(i * 7919) % 1000}`).join("");
      const [s0, n0] = await gapTotals(router.url);
      const reads = Array.from({ length: streamsPerEngine * 2 }, (_, i) =>
        stream(router.url, `${i}${words}`),
      );
      const victim = urls[1]!;
      const onVictim = () => reads.filter((r) => r.route.includes(victim));
      while (!(onVictim().length === streamsPerEngine && onVictim().every((r) => r.at.length >= after)))
        await new Promise((r) => setTimeout(r, 5));
      const killedAt = performance.now();
      sims[1]!.kill("SIGKILL");
      await Promise.all(reads.map((r) => r.done));
      const stalls: number[] = [];
      const itls: number[] = [];
      for (const r of onVictim()) {
        // the break is the widest gap after the kill (events the engine wrote just before it may
        // still be read after it); the stream's mean gap before it is its ITL
        let k = -1;
        for (let i = 1; i < r.at.length; i++) {
          if (r.at[i]! <= killedAt) continue;
          if (k < 0 || r.at[i]! - r.at[i - 1]! > r.at[k]! - r.at[k - 1]!) k = i;
        }
        if (k > 0) stalls.push(r.at[k]! - r.at[k - 1]!);
        if (k > 1) itls.push((r.at[k - 1]! - r.at[0]!) / (k - 1));
      }
      const [s1, n1] = await gapTotals(router.url);
      const errors = reads.reduce((n, r) => n + r.errors.length, 0);
      const full = reads.every((r) => r.at.length > 0) ? "" : " (a stream read nothing)";
      const itl = quantile(itls, 0.5);
      const ttft = quantile(
        onVictim().map((r) => r.at[0]! - r.sent),
        0.5,
      );
      const routerGap = n1 > n0 ? ((s1 - s0) / (n1 - n0)) * 1000 : NaN;
      rows.push(
        `${String(len).padStart(6)}  ${ttft.toFixed(1).padStart(8)}  ${quantile(stalls, 0.5).toFixed(1).padStart(9)}  ${quantile(stalls, 1).toFixed(1).padStart(9)}  ${itl.toFixed(1).padStart(8)}  ${(quantile(stalls, 0.5) - itl).toFixed(1).padStart(10)}  ${routerGap.toFixed(1).padStart(10)}  ${String(errors).padStart(6)}${full}`,
      );
      // the killed engine comes back on its port for the next round
      sims[1] = startSim(ports[1]!);
      await waitHttp(`${victim}/health`);
    }
    console.log(
      `model ${model}, time scale ${timeScale}, ${streamsPerEngine} streams per engine, ${maxTokens} tokens, break after ${after}`,
    );
    console.log(
      "prompt  TTFT p50  stall p50  stall max  ITL mean  added p50  router gap  errors   (prompt in words ≈ tokens; times in ms)",
    );
    for (const r of rows) console.log(r);
    console.log(
      "TTFT: the streams' own first token (their prompts prefilled together); stall: the client's gap across the break; added: stall − ITL; router gap: break → first byte of the next engine (switchyard_migration_seconds, mean)",
    );
  } finally {
    await router.close(0);
    for (const s of sims) s.kill("SIGKILL");
  }
}

/** switchyard_migration_seconds' sum and count so far. */
async function gapTotals(url: string): Promise<[number, number]> {
  const m = await (await fetch(`${url}/metrics`)).text();
  const sum = /^switchyard_migration_seconds_sum\{[^}]*\} (\S+)$/m.exec(m);
  const count = /^switchyard_migration_seconds_count\{[^}]*\} (\S+)$/m.exec(m);
  return [Number(sum?.[1] ?? 0), Number(count?.[1] ?? 0)];
}

async function waitUntilHealthy(reg: { snapshot(): readonly { healthy: boolean }[] }): Promise<void> {
  for (let i = 0; i < 400 && !reg.snapshot().every((v) => v.healthy); i++)
    await new Promise((r) => setTimeout(r, 50));
}

void main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
