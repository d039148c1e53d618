// A minimal, independent OpenAI-compatible server for the bench's tests: node:http, SSE with
// controlled chunk timings, /tokenize (one token a word), /v1/models and a /metrics page. It shares
// no code with the sim or the router, so the bench is tested against a third implementation.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

export interface MiniOptions {
  model?: string;
  /** ms before the first token; a function gets the request's arrival number */
  ttftMs?: number | ((n: number) => number);
  /** ms between tokens */
  itlMs?: number;
  /** report usage in a final chunk when stream_options.include_usage is set */
  usage?: boolean;
  /** offer POST /tokenize */
  tokenize?: boolean;
  /** tokens per word that /tokenize reports */
  tokensPerWord?: number;
  /** answer every Nth request (1-based) with this HTTP status */
  failEvery?: { n: number; status: number };
  /** send the chat role chunk right away, before the first token's delay */
  earlyRole?: boolean;
  /** require this bearer token on /v1 */
  apiKey?: string;
  /** every Nth request (1-based) ends on EOS at its first token: one chunk, no text, finish "stop" */
  eosFirstEvery?: number;
}

export interface Mini {
  url: string;
  server: Server;
  /** requests seen, with their headers and parsed bodies */
  seen: { path: string; headers: IncomingMessage["headers"]; body: Record<string, unknown> }[];
  close: () => Promise<void>;
}

const sleep = (ms: number) => (ms > 0 ? new Promise((r) => setTimeout(r, ms)) : Promise.resolve());

export async function startMini(o: MiniOptions = {}): Promise<Mini> {
  const model = o.model ?? "mini-model";
  const seen: Mini["seen"] = [];
  let n = 0;
  let prefixHits = 0;
  let prefixQueries = 0;
  let ttftSum = 0;
  let ttftCount = 0;

  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const path = (req.url ?? "/").split("?")[0]!;
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const text = Buffer.concat(chunks).toString("utf8");
    const body = text ? (JSON.parse(text) as Record<string, unknown>) : {};
    if (path.startsWith("/v1") && o.apiKey && req.headers.authorization !== `Bearer ${o.apiKey}`) {
      res.writeHead(401, { "content-type": "application/json" }).end('{"error":"Unauthorized"}');
      return;
    }
    if (path === "/v1/models") {
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ object: "list", data: [{ id: model, object: "model" }] }));
      return;
    }
    if (path === "/tokenize" && o.tokenize) {
      const words = String(body.prompt ?? "")
        .split(/\s+/)
        .filter(Boolean).length;
      const count = Math.round(words * (o.tokensPerWord ?? 1));
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ count, max_model_len: 8192, tokens: [] }));
      return;
    }
    if (path === "/metrics") {
      res.writeHead(200, { "content-type": "text/plain" });
      res.end(
        [
          "# TYPE vllm:prefix_cache_hits_total counter",
          `vllm:prefix_cache_hits_total{engine="0",model_name="${model}"} ${prefixHits}`,
          `vllm:prefix_cache_queries_total{engine="0",model_name="${model}"} ${prefixQueries}`,
          `vllm:num_preemptions_total{engine="0",model_name="${model}"} 0`,
          `vllm:time_to_first_token_seconds_sum{engine="0",model_name="${model}"} ${ttftSum}`,
          `vllm:time_to_first_token_seconds_count{engine="0",model_name="${model}"} ${ttftCount}`,
          "",
        ].join("\n"),
      );
      return;
    }
    const chat = path === "/v1/chat/completions";
    if (!chat && path !== "/v1/completions") {
      res.writeHead(404, { "content-type": "application/json" }).end('{"error":{"message":"not found"}}');
      return;
    }
    seen.push({ path, headers: req.headers, body });
    const k = ++n;
    if (o.failEvery && k % o.failEvery.n === 0) {
      res.writeHead(o.failEvery.status, { "content-type": "application/json" });
      res.end(
        JSON.stringify({
          error: { message: "injected failure", type: "X", param: null, code: o.failEvery.status },
        }),
      );
      return;
    }
    const eosFirst = o.eosFirstEvery !== undefined && k % o.eosFirstEvery === 0;
    const maxTokens = eosFirst ? 1 : Number(body.max_tokens ?? 16);
    const promptWords = chat
      ? (body.messages as { content: string }[]).reduce((s, m) => s + m.content.split(/\s+/).length, 0)
      : String(body.prompt).split(/\s+/).length;
    prefixQueries += promptWords;
    prefixHits += Math.floor(promptWords / 2);
    const withUsage =
      o.usage !== false && Boolean((body.stream_options as { include_usage?: boolean })?.include_usage);
    res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" });
    const id = `cmpl-${k}`;
    const send = (obj: unknown) => res.write(`data: ${JSON.stringify(obj)}\n\n`);
    const piece = (i: number, text: string, finish: string | null) =>
      chat
        ? {
            id,
            object: "chat.completion.chunk",
            model,
            choices: [{ index: 0, delta: { content: text }, finish_reason: finish }],
          }
        : { id, object: "text_completion", model, choices: [{ index: 0, text, finish_reason: finish }] };
    const t0 = Date.now();
    if (chat && o.earlyRole)
      send({
        id,
        object: "chat.completion.chunk",
        model,
        choices: [{ index: 0, delta: { role: "assistant", content: "" } }],
      });
    const ttft = typeof o.ttftMs === "function" ? o.ttftMs(k) : (o.ttftMs ?? 0);
    await sleep(ttft);
    if (chat && !o.earlyRole)
      send({
        id,
        object: "chat.completion.chunk",
        model,
        choices: [{ index: 0, delta: { role: "assistant", content: "" } }],
      });
    ttftSum += (Date.now() - t0) / 1000;
    ttftCount++;
    for (let i = 0; i < maxTokens; i++) {
      if (i > 0) await sleep(o.itlMs ?? 0);
      if (eosFirst) send(piece(i, "", "stop"));
      else send(piece(i, ` w${i}`, i === maxTokens - 1 ? "length" : null));
    }
    if (withUsage)
      send({
        id,
        object: "chat.completion.chunk",
        model,
        choices: [],
        usage: {
          prompt_tokens: promptWords,
          completion_tokens: maxTokens,
          total_tokens: promptWords + maxTokens,
        },
      });
    res.end("data: [DONE]\n\n");
  };

  const server = createServer((req, res) => {
    handle(req, res).catch((err: Error) => {
      if (!res.headersSent) res.writeHead(500).end(err.message);
      else res.destroy();
    });
  });
  server.keepAliveTimeout = 60_000;
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    server,
    seen,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}
