// Acceptance bench for `switchyard sim`: one sim process, N concurrent streamed completions opened by
// a client in ANOTHER process (this one), one token per SSE event. Reports client-side tokens/s in
// the steady window (every stream open), stream count, and the sim's RSS before, at peak and after.
//
//   npm run build && node dist/bench/sim/streams.js [--streams 2000] [--max-tokens 200] [--time-scale 4]
//
// --time-scale is chosen so that the modelled engine offers more than 20k tokens/s: with 2,000
// sequences a Llama-3.1-8B decode step on an H100 is modelled at ~20-25 ms (2,000 tokens), so at
// time-scale 4 the engine offers ~20-25k tokens/s; the bench prints the engine's own figures too.
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { createServer } from "node:net";
import { fileURLToPath } from "node:url";
import { Agent, request } from "undici";

function arg(name: string, def: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : def;
}

const STREAMS = arg("streams", 2000);
const MAX_TOKENS = arg("max-tokens", 200);
const TIME_SCALE = arg("time-scale", 4);
const WINDOW_S = arg("window", 6);

function rssMiB(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const m = /VmRSS:\s+(\d+) kB/.exec(status);
  return m ? Number(m[1]) / 1024 : NaN;
}

/** user + system CPU seconds of a process, from /proc (clock ticks of 100 Hz). */
function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer();
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

function simCommand(): string[] {
  const here = import.meta.url;
  if (here.endsWith(".ts")) return ["--import", "tsx", fileURLToPath(new URL("../../src/cli/main.ts", here))];
  return [fileURLToPath(new URL("../../src/cli/main.js", here))];
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function main(): Promise<void> {
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const child = spawn(
    process.execPath,
    [
      // e.g. BENCH_SIM_NODE_ARGS=--cpu-prof to profile the sim process
      ...(process.env.BENCH_SIM_NODE_ARGS ? process.env.BENCH_SIM_NODE_ARGS.split(" ") : []),
      ...simCommand(),
      "sim",
      "meta-llama/Llama-3.1-8B-Instruct",
      "--host",
      "127.0.0.1",
      "--port",
      String(port),
      "--max-num-seqs",
      "2048",
      "--time-scale",
      String(TIME_SCALE),
    ],
    { stdio: ["ignore", "ignore", "inherit"], env: { ...process.env, SWITCHYARD_LOG_LEVEL: "warn" } },
  );
  try {
    for (let i = 0; ; i++) {
      try {
        const r = await fetch(`${base}/health`);
        if (r.status === 200) break;
      } catch {
        /* not up yet */
      }
      if (i > 200) throw new Error("sim did not start");
      await sleep(100);
    }
    // Warm the code paths once before measuring memory.
    await (
      await fetch(`${base}/v1/completions`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ prompt: "warm up", max_tokens: 4, stream: true }),
      })
    ).text();
    const rssBefore = rssMiB(child.pid!);

    const dispatcher = new Agent({
      connections: STREAMS + 16,
      pipelining: 1,
      bodyTimeout: 0,
      headersTimeout: 0,
    });
    let tokens = 0;
    let firstSeen = 0;
    let done = 0;
    let failed = 0;
    const body = (i: number) =>
      JSON.stringify({
        prompt: `Stream number ${i}: tell me a long story about switchyards.`,
        max_tokens: MAX_TOKENS,
        stream: true,
        ignore_eos: true,
      });
    const t0 = performance.now();
    const simCpu0 = cpuSeconds(child.pid!);
    const clientCpu0 = process.cpuUsage();
    const one = async (i: number) => {
      try {
        const res = await request(`${base}/v1/completions`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: body(i),
          dispatcher,
        });
        if (res.statusCode !== 200) {
          failed++;
          await res.body.text();
          return;
        }
        let first = true;
        for await (const chunk of res.body) {
          const s = (chunk as Buffer).toString("latin1");
          let n = 0;
          for (let at = s.indexOf("\n\n"); at >= 0; at = s.indexOf("\n\n", at + 2)) n++;
          if (s.includes("[DONE]")) n--;
          tokens += n;
          if (first && n > 0) {
            first = false;
            firstSeen++;
          }
        }
        done++;
      } catch {
        failed++;
      }
    };
    const all = Promise.all(Array.from({ length: STREAMS }, (_, i) => one(i)));

    // Steady window: from the moment every stream has its first token.
    while (firstSeen + failed < STREAMS && performance.now() - t0 < 60_000) await sleep(20);
    const allOpenAt = (performance.now() - t0) / 1000;
    const startTokens = tokens;
    const ws = performance.now();
    let peakRss = rssMiB(child.pid!);
    const perSecond: number[] = [];
    let last = tokens;
    while ((performance.now() - ws) / 1000 < WINDOW_S && done + failed < STREAMS) {
      await sleep(1000);
      perSecond.push(tokens - last);
      last = tokens;
      peakRss = Math.max(peakRss, rssMiB(child.pid!));
    }
    const windowS = (performance.now() - ws) / 1000;
    const simCpu = cpuSeconds(child.pid!) - simCpu0;
    const cu = process.cpuUsage(clientCpu0);
    const clientCpu = (cu.user + cu.system) / 1e6;
    const untilWindowEnd = (performance.now() - t0) / 1000;
    const windowTokens = tokens - startTokens;
    await all;
    const totalS = (performance.now() - t0) / 1000;
    await dispatcher.close();
    const metrics = await (await fetch(`${base}/metrics`)).text();
    const sample = (name: string) => {
      const line = metrics.split("\n").find((l) => l.startsWith(name));
      return line ? Number(line.slice(line.lastIndexOf(" ") + 1)) : NaN;
    };
    await sleep(500);
    const rssAfter = rssMiB(child.pid!);
    const steps = sample("switchyard_sim_steps_total");
    const busy = sample("switchyard_sim_busy_seconds_total");
    const report = {
      streams: STREAMS,
      maxTokens: MAX_TOKENS,
      timeScale: TIME_SCALE,
      completed: done,
      failed,
      allStreamsOpenAfterS: Number(allOpenAt.toFixed(2)),
      steadyWindowS: Number(windowS.toFixed(2)),
      steadyTokensPerS: Math.round(windowTokens / windowS),
      perSecond,
      totalTokens: tokens,
      overallTokensPerS: Math.round(tokens / totalS),
      engineSteps: steps,
      engineModelledStepMs: Number(((busy / steps) * 1000).toFixed(2)),
      engineOfferedTokensPerS: Math.round(sample("vllm:generation_tokens_total") / (busy * TIME_SCALE)),
      cpuShareUntilWindowEnd: {
        sim: Number((simCpu / untilWindowEnd).toFixed(2)),
        client: Number((clientCpu / untilWindowEnd).toFixed(2)),
      },
      simRssMiB: { before: Math.round(rssBefore), peak: Math.round(peakRss), after: Math.round(rssAfter) },
    };
    console.log(JSON.stringify(report, null, 2));
  } finally {
    child.kill("SIGTERM");
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
