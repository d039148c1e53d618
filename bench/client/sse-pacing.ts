// Does the bench's ITL measure the engine's? One `switchyard sim` per round (on an H100 profile: by
// default Llama-3.1-8B, whose steps that carry a 1,024-token prefill take ~4x a decode-only step, and
// Qwen2.5-0.5B, where per-step overhead dominates and the two kinds of step differ little) and
// `switchyard bench --workload random --num-requests 200 --concurrency 16` against it, both as users
// run them (separate processes), rounds interleaved over the models and time scales given. Per round: the
// share of ITL samples under 0.5 ms (events the client read together), the client's median and mean
// ITL against the engine's own mean (`vllm:inter_token_latency_seconds` sum/count over the run), the
// tokens per SSE event, and failed requests.
//
//   npm run build && node dist/bench/client/sse-pacing.js [--rounds 3] [--time-scales 1,0.1] [--input-len 1024]
//     [--models meta-llama/Llama-3.1-8B-Instruct,Qwen/Qwen2.5-0.5B-Instruct]
import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

function arg(name: string, def: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1]! : def;
}

const ROUNDS = Number(arg("rounds", "3"));
const SCALES = arg("time-scales", "1,0.1").split(",").map(Number);
const INPUT_LEN = arg("input-len", "1024");
const MODELS = arg("models", "meta-llama/Llama-3.1-8B-Instruct,Qwen/Qwen2.5-0.5B-Instruct").split(",");
const PORT = Number(arg("port", "18330"));
const MAIN = fileURLToPath(new URL("../../src/cli/main.js", import.meta.url));

async function waitHealthy(url: string): Promise<void> {
  for (let i = 0; i < 150; i++) {
    try {
      if ((await fetch(url)).ok) return;
    } catch {
      // not yet
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`${url} never answered`);
}

interface Result {
  itls: number[][];
  output_lens: number[];
  failed: number;
  median_itl_ms: number;
  mean_itl_ms: number;
  server: { mean_itl_ms: number | null } | null;
}

const dir = mkdtempSync(join(tmpdir(), "sse-pacing-"));
console.log(
  "model | time-scale | round | load | ITL < 0.5 ms | median ITL | mean ITL | engine mean ITL | median/engine | mean/engine | tokens/event | failed",
);
try {
  for (let r = 1; r <= ROUNDS; r++) {
    for (const [model, scale] of MODELS.flatMap((m) => SCALES.map((s) => [m, s] as const))) {
      const sim = spawn(
        process.execPath,
        [MAIN, "sim", model, "--host", "127.0.0.1", "--port", String(PORT), "--time-scale", String(scale)],
        { stdio: "ignore", env: { ...process.env, SWITCHYARD_LOG_LEVEL: "error" } },
      );
      try {
        await waitHealthy(`http://127.0.0.1:${PORT}/health`);
        const load = loadavg()[0]!.toFixed(1);
        const out = join(dir, `r${r}-${scale}-${model.replace(/\W/g, "_")}.json`);
        const b = spawnSync(
          process.execPath,
          [
            MAIN,
            "bench",
            "--base-url",
            `http://127.0.0.1:${PORT}`,
            "--workload",
            "random",
            "--input-len",
            INPUT_LEN,
          ].concat([
            "--num-requests",
            "200",
            "--concurrency",
            "16",
            "--seed",
            String(r),
            "--no-progress",
            "--out",
            out,
          ]),
          { encoding: "utf8", env: { ...process.env, SWITCHYARD_LOG_LEVEL: "error" } },
        );
        if (b.status !== 0) throw new Error(`bench failed: ${b.stderr}`);
        const res = JSON.parse(readFileSync(out, "utf8")) as Result;
        const gaps = res.itls.flat();
        const tiny = gaps.filter((g) => g < 0.0005).length / gaps.length;
        const tokens = res.output_lens.reduce((a, n) => a + n, 0);
        const events = gaps.length + res.itls.length;
        const eng = res.server?.mean_itl_ms ?? NaN;
        console.log(
          [
            model,
            scale,
            r,
            load,
            `${(tiny * 100).toFixed(1)}%`,
            res.median_itl_ms.toFixed(2),
            res.mean_itl_ms.toFixed(2),
            eng.toFixed(2),
            (res.median_itl_ms / eng).toFixed(3),
            (res.mean_itl_ms / eng).toFixed(3),
            (tokens / events).toFixed(2),
            res.failed,
          ].join(" | "),
        );
      } finally {
        sim.kill("SIGTERM");
        await new Promise((r) => sim.once("exit", r));
      }
    }
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
