// How long one long prompt holds the router's event loop when KV-aware routing hashes its blocks. One
// router process and one sim with KV events: novel chat prompts of --words made-up words (≈ one token
// each, 75k by default: within Llama 3.1's 128k context) are sent one at a time, under round-robin (the
// reference: the prompt is counted but never hashed) and under the kv policy (its blocks hashed on the
// router, 4.7k blocks of 16 for 75k tokens). Per request the router's own nodejs_eventloop_lag_max_seconds
// is read before and after (prom-client resets it per scrape); an idle loop reads its sampling interval
// (10 ms), so a request's hold is its reading less 10 ms (a hold shorter than one interval may read
// up to 10 ms short). Reports the median and the
// maximum hold per policy, kv's first request left out (no events yet: it routes by the prefix index).
// Not part of npm test.
//   npm run bench -- routing/kv-hash-hold [--requests 5] [--words 75000]
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { FlagSpecs } from "../../src/config/args.js";
import { benchFlags } from "../support/flags.js";
import { mulberry32 } from "../../src/random/rng.js";
import { WORDS } from "../../src/workload/text.js";
import { startStack } from "./live.js";
import { median } from "../../src/workload/stats.js";

const specs: FlagSpecs = {
  requests: { type: "int", default: 5, min: 2, help: "prompts per policy" },
  words: { type: "int", default: 75_000, min: 1_000, help: "made-up words per prompt" },
  model: { type: "string", default: "meta-llama/Llama-3.1-8B-Instruct", help: "" },
  "out-dir": { type: "string", help: "logs (default: a temporary folder)" },
};
const { flags } = benchFlags(specs);
const outDir = (flags["out-dir"] as string | undefined) ?? mkdtempSync(join(tmpdir(), "kv-hash-hold-"));
const model = flags.model as string;
const rnd = mulberry32(7);

async function lagMaxMs(url: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const m = /^nodejs_eventloop_lag_max_seconds(?:\{[^}]*\})? (\S+)/m.exec(text);
  return m ? Number(m[1]) * 1000 : NaN;
}

/** prom-client's event-loop delay sampling interval (its default precision) */
const SAMPLING_MS = 10;
const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Row {
  policy: string;
  holds: number[];
  sources: string[];
}

async function run(policy: string): Promise<Row> {
  const stack = await startStack({
    outDir,
    tag: policy,
    engines: 1,
    model,
    simArgs: ["--time-scale", "0.01"],
    policy,
  });
  const url = stack.routerUrl;
  const row: Row = { policy, holds: [], sources: [] };
  try {
    for (let i = 0; i < (flags.requests as number); i++) {
      const words: string[] = [];
      for (let w = 0; w < (flags.words as number); w++) words.push(WORDS[Math.floor(rnd() * WORDS.length)]!);
      // the engine's KV events for the last prompt have arrived; the loop's maximum starts afresh
      await pause(1000);
      await lagMaxMs(url);
      const res = await fetch(`${url}/v1/chat/completions`, {
        method: "POST",
        headers: { "content-type": "application/json", "x-switchyard-debug": "1" },
        body: JSON.stringify({
          model,
          messages: [{ role: "user", content: words.join(" ") }],
          max_tokens: 1,
        }),
      });
      await res.arrayBuffer();
      if (res.status !== 200) throw new Error(`${policy}: status ${res.status}; logs in ${outDir}`);
      const hold = (await lagMaxMs(url)) - SAMPLING_MS;
      const source = /source=(\w+)/.exec(res.headers.get("x-switchyard-route") ?? "")?.[1] ?? "load";
      console.log(`${policy} request ${i}: loop held ${hold.toFixed(1)} ms at most (routed by ${source})`);
      // kv's first prompt routes by the prefix index (no events yet): not what is measured
      if (policy === "kv" && i === 0) continue;
      row.holds.push(hold);
      row.sources.push(source);
    }
  } finally {
    await stack.close();
  }
  return row;
}

console.log(
  `kv hash hold: ${flags.requests} novel chat prompts of ${flags.words} words per policy, one router process, one sim; logs in ${outDir}`,
);
const rows = [await run("round-robin"), await run("kv")];
console.log(
  "\n| policy | requests | loop hold median ms | loop hold max ms | routed by |\n|---|---|---|---|---|",
);
for (const r of rows)
  console.log(
    `| ${r.policy} | ${r.holds.length} | ${median(r.holds).toFixed(1)} | ${Math.max(...r.holds).toFixed(1)} | ${[...new Set(r.sources)].join(", ")} |`,
  );
const [rr, kv] = rows as [Row, Row];
console.log(
  `\nkv over round-robin: median hold ${(median(kv.holds) - median(rr.holds)).toFixed(1)} ms more, max ${(Math.max(...kv.holds) - Math.max(...rr.holds)).toFixed(1)} ms more`,
);
