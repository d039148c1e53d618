// A minimal fast engine stand-in for the router benchmarks: /v1/models, /metrics, /health, and
// completions answered at once (tiny JSON) or as 256 SSE chunks, each its own write. Not the sim: the
// point is to measure the proxy, not the engine model.
//   node --import tsx bench/support/fakes/fast-upstream.ts PORT
import { createServer } from "node:http";

const TINY = JSON.stringify({
  id: "cmpl-1",
  object: "text_completion",
  created: 1,
  model: "bench/m",
  choices: [{ index: 0, text: "ok", logprobs: null, finish_reason: "length", stop_reason: null }],
  usage: { prompt_tokens: 1, total_tokens: 2, completion_tokens: 1 },
});
const CHUNK = `data: ${JSON.stringify({ id: "cmpl-1", object: "text_completion", created: 1, model: "bench/m", choices: [{ index: 0, text: " tok", logprobs: null, finish_reason: null }] })}\n\n`;

function upstream(port: number): void {
  const models = JSON.stringify({ object: "list", data: [{ id: "bench/m", object: "model", parent: null }] });
  createServer((req, res) => {
    if (req.method === "GET") {
      if (req.url === "/v1/models") {
        res.writeHead(200, { "content-type": "application/json" });
        return void res.end(models);
      }
      res.writeHead(200, { "content-type": "text/plain" });
      return void res.end(req.url === "/metrics" ? "vllm:num_requests_running 0\n" : "");
    }
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const stream = Buffer.concat(chunks).includes('"stream":true');
      if (!stream) {
        res.writeHead(200, { "content-type": "application/json", "content-length": Buffer.byteLength(TINY) });
        return void res.end(TINY);
      }
      res.writeHead(200, { "content-type": "text/event-stream" });
      let i = 0;
      // each chunk its own write, a macrotask apart, like tokens from an engine
      const tick = () => {
        if (i++ < 256) {
          res.write(CHUNK);
          setImmediate(tick);
        } else res.end("data: [DONE]\n\n");
      };
      tick();
    });
  }).listen(port, "127.0.0.1").keepAliveTimeout = 60_000;
}

upstream(Number(process.argv[2]));
