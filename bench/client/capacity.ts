// Client capacity: can `switchyard bench` drive 2,000 requests/s of tiny requests and 20,000
// streamed tokens/s without distorting what it measures? A minimal fast server runs in another
// process (zero-latency answers; or one token per stream every TICK_MS from a single ticker), so
// any latency beyond that is the client's own overhead.
//   npm run bench -- client/capacity     (or: node --import tsx bench/client/capacity.ts)
import { spawn } from "node:child_process";
import { once } from "node:events";
import { runBench, type BenchOptions } from "../../src/bench/run.js";

const TICK_MS = 5;

// CommonJS so that `node -e` runs it without a file; kept minimal on purpose.
const SERVER = `
const http = require("node:http");
const streams = new Set();
const model = "capacity";
const chunk = (t) => 'data: {"id":"c","object":"text_completion","model":"capacity","choices":[{"index":0,"text":"' + t + '","finish_reason":null}]}\\n\\n';
const finish = (s) => {
  s.res.end('data: {"id":"c","object":"text_completion","model":"capacity","choices":[],"usage":{"prompt_tokens":' + s.prompt + ',"completion_tokens":' + s.n + ',"total_tokens":' + (s.prompt + s.n) + '}}\\n\\ndata: [DONE]\\n\\n');
};
setInterval(() => {
  for (const s of streams) {
    s.res.write(chunk(" x"));
    if (++s.sent >= s.n) { streams.delete(s); finish(s); }
  }
}, ${TICK_MS});
http.createServer((req, res) => {
  const parts = [];
  req.on("data", (c) => parts.push(c));
  req.on("end", () => {
    if (req.url === "/v1/models") { res.end('{"object":"list","data":[{"id":"capacity"}]}'); return; }
    const body = JSON.parse(Buffer.concat(parts).toString() || "{}");
    const n = Number(body.max_tokens || 1);
    const prompt = String(body.prompt || "").split(" ").length;
    res.writeHead(200, { "content-type": "text/event-stream" });
    if (n <= 1) { res.write(chunk(" x")); finish({ res, n: 1, prompt }); return; }
    // first token at once, the rest one per tick
    res.write(chunk(" x"));
    streams.add({ res, n, sent: 1, prompt });
  });
}).listen(0, "127.0.0.1", function () { console.log(this.address().port); });
`;

function options(url: string, o: Partial<BenchOptions>): BenchOptions {
  return {
    baseUrl: url,
    model: "capacity",
    endpoint: "completions",
    apiKey: null,
    headers: {},
    extraBody: {},
    workload: "random",
    workloadFlags: { inputLen: 8, outputLen: 1 },
    qps: [Infinity],
    arrival: "constant",
    concurrency: 64,
    numRequests: 10_000,
    durationS: null,
    warmup: 500,
    seed: 1,
    slo: null,
    percentiles: [99],
    scrape: null,
    connections: null,
    timeoutMs: 30_000,
    calibrate: false,
    progress: false,
    ...o,
  };
}

async function main(): Promise<void> {
  const child = spawn(process.execPath, ["-e", SERVER], { stdio: ["ignore", "pipe", "inherit"] });
  const [first] = (await once(child.stdout!, "data")) as [Buffer];
  const url = `http://127.0.0.1:${first.toString().trim()}`;
  const rows: Record<string, string | number>[] = [];
  const record = (
    name: string,
    res: Record<string, unknown>,
    extra: Record<string, string | number> = {},
  ) => {
    const c = res.client as Record<string, number>;
    const n2 = (x: unknown) => Number(Number(x).toFixed(2));
    rows.push({
      case: name,
      completed: Number(res.completed),
      failed: Number(res.failed),
      "req/s": n2(res.request_throughput),
      "tok/s": n2(res.output_throughput),
      "ttft p50 ms": n2(res.median_ttft_ms),
      "ttft p99 ms": n2(res.p99_ttft_ms),
      "itl p50 ms": n2(res.median_itl_ms),
      "itl p99 ms": n2(res.p99_itl_ms),
      "loop delay p99 ms": n2(c.event_loop_delay_p99_ms),
      ...extra,
    });
  };
  try {
    const warn = (m: string) => console.error(`warning: ${m}`);
    // 1. Closed loop, tiny requests, as fast as they go: the client's request rate ceiling.
    const [a] = await runBench(options(url, { concurrency: 64 }), { warn });
    record("tiny, closed loop c=64", a!.result);
    // 2. Open loop at 2,000 req/s (constant gaps): does the client keep the schedule?
    const [b] = await runBench(options(url, { qps: [2000], concurrency: null, numRequests: 10_000 }), {
      warn,
    });
    record("tiny, open loop 2000 req/s", b!.result);
    // 3. Streams of 200 tokens, one token each per 5 ms tick: 120 streams offer 24,000 tok/s, 240 twice
    //    that. The ITL the client measures should stay at the server's tick.
    for (const streams of [120, 240]) {
      const [c] = await runBench(
        options(url, {
          concurrency: streams,
          numRequests: 1200,
          warmup: streams,
          workloadFlags: { inputLen: 8, outputLen: 200 },
        }),
        { warn },
      );
      record(`streams c=${streams} x 200 tok`, c!.result, { "server tick ms": TICK_MS });
    }
  } finally {
    child.kill();
  }
  console.table(rows);
  console.log(JSON.stringify({ bench: "client-capacity", node: process.version, rows }));
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
