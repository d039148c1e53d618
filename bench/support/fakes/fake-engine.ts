// A small stand-in for `vllm serve` for router tests: vLLM's wire formats for chat and completions
// (streaming or not, usage), /v1/models with LoRA adapters, /metrics with the gauges the router
// scrapes, and fault modes (hang, 503, reset, killed). Each output token is the word "tok".
import { VLLM_ENGINE_DEAD_MESSAGE } from "../../../src/http/vllm-answers.js";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { Socket } from "node:net";
import type { AddressInfo } from "node:net";

/** "dead": vLLM's EngineDeadError 500; "500": any other 500 */
export type FaultMode = "ok" | "hang" | "503" | "reset" | "dead" | "500";

export interface FakeEngineOptions {
  models?: string[];
  /** adapter name → parent model */
  adapters?: Record<string, string>;
  /** delay between streamed tokens, ms */
  tokenDelayMs?: number;
  /** delay before the first token, ms */
  firstTokenDelayMs?: number;
  running?: number;
  waiting?: number;
  kvUsage?: number;
  /** answers 401 on /v1 paths unless this bearer key is sent */
  apiKey?: string;
  port?: number;
  /** max_model_len announced in /v1/models (default 8192) */
  maxModelLen?: number;
}

export interface FakeEngine {
  url: string;
  port: number;
  mode: FaultMode;
  /** GET /health alone: "503" answers 503, "hang" never answers (the rest keeps working) */
  healthMode: "ok" | "503" | "hang";
  /** requests seen by generation endpoints (for routing assertions) */
  hits: number;
  /** last request's headers, for header assertions */
  lastHeaders: IncomingMessage["headers"] | undefined;
  lastBody: string;
  /** generation requests in progress (aborts observed) */
  active: number;
  aborted: number;
  opts: FakeEngineOptions;
  kill(): Promise<void>;
  /** listens again on the same port after kill() */
  restart(): Promise<void>;
  close(): Promise<void>;
}

function json(res: ServerResponse, status: number, value: unknown): void {
  const body = JSON.stringify(value);
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(body) });
  res.end(body);
}

function readAll(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
    req.on("error", reject);
  });
}

export async function startFakeEngine(opts: FakeEngineOptions = {}): Promise<FakeEngine> {
  const models = opts.models ?? ["fake/model-a"];
  const sockets = new Set<Socket>();
  let server: Server | undefined;
  let idSeq = 0;

  const eng: FakeEngine = {
    url: "",
    port: 0,
    mode: "ok",
    healthMode: "ok",
    hits: 0,
    lastHeaders: undefined,
    lastBody: "",
    active: 0,
    aborted: 0,
    opts,
    kill: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => (server ? server.close(() => r()) : r()));
      server = undefined;
    },
    restart: async () => {
      await listen(eng.port);
    },
    close: async () => eng.kill(),
  };

  const modelCards = () => {
    const created = 1700000000;
    const base = models.map((id) => ({
      id,
      object: "model",
      created,
      owned_by: "vllm",
      root: id,
      parent: null,
      max_model_len: opts.maxModelLen ?? 8192,
      permission: [],
    }));
    const lora = Object.entries(opts.adapters ?? {}).map(([id, parent]) => ({
      id,
      object: "model",
      created,
      owned_by: "vllm",
      root: `/adapters/${id}`,
      parent,
      max_model_len: opts.maxModelLen ?? 8192,
      permission: [],
    }));
    return { object: "list", data: [...base, ...lora] };
  };

  const metrics = () =>
    [
      "# HELP vllm:num_requests_running Number of requests in model execution batches.",
      "# TYPE vllm:num_requests_running gauge",
      `vllm:num_requests_running{engine="0",model_name="${models[0]}"} ${opts.running ?? 0}.0`,
      "# TYPE vllm:num_requests_waiting gauge",
      `vllm:num_requests_waiting{engine="0",model_name="${models[0]}"} ${opts.waiting ?? 0}.0`,
      "# TYPE vllm:kv_cache_usage_perc gauge",
      `vllm:kv_cache_usage_perc{engine="0",model_name="${models[0]}"} ${opts.kvUsage ?? 0}`,
      "# TYPE vllm:cache_config_info gauge",
      `vllm:cache_config_info{block_size="16",cache_dtype="auto",enable_prefix_caching="True",engine="0",num_gpu_blocks="2048",prefix_caching_hash_algo="sha256"} 1.0`,
      `vllm:time_to_first_token_seconds_bucket{engine="0",le="0.001",model_name="${models[0]}"} 0.0`,
      "",
    ].join("\n");

  const generate = async (req: IncomingMessage, res: ServerResponse, chat: boolean) => {
    const text = await readAll(req);
    eng.lastBody = text;
    let body: Record<string, unknown>;
    try {
      body = JSON.parse(text) as Record<string, unknown>;
    } catch {
      return json(res, 400, {
        error: { message: "bad json", type: "BadRequestError", param: null, code: 400 },
      });
    }
    const model = String(body.model);
    if (!models.includes(model) && !(opts.adapters && model in opts.adapters)) {
      return json(res, 404, {
        error: {
          message: `The model \`${model}\` does not exist.`,
          type: "NotFoundError",
          param: "model",
          code: 404,
        },
      });
    }
    const n = typeof body.max_tokens === "number" ? body.max_tokens : 4;
    const promptTokens = 7;
    const id = `${chat ? "chatcmpl" : "cmpl"}-${++idSeq}`;
    const created = Math.floor(Date.now() / 1000);
    const object = chat ? "chat.completion" : "text_completion";
    const usage = { prompt_tokens: promptTokens, total_tokens: promptTokens + n, completion_tokens: n };
    eng.active++;
    let closed = false;
    res.on("close", () => {
      if (!res.writableFinished) eng.aborted++;
      closed = true;
      eng.active--;
    });
    // a request its client cancels stops waiting (no timer outlives it)
    const sleep = (ms: number) =>
      new Promise<void>((r) => {
        if (closed) return r();
        const done = () => {
          clearTimeout(t);
          res.off("close", done);
          r();
        };
        const t = setTimeout(done, ms);
        res.once("close", done);
      });
    if (!body.stream) {
      if (opts.firstTokenDelayMs) await sleep(opts.firstTokenDelayMs);
      if (closed) return;
      const content = Array.from({ length: n }, () => "tok").join(" ");
      const choice = chat
        ? {
            index: 0,
            message: { role: "assistant", content, refusal: null, tool_calls: [], reasoning_content: null },
            logprobs: null,
            finish_reason: "length",
            stop_reason: null,
          }
        : { index: 0, text: content, logprobs: null, finish_reason: "length", stop_reason: null };
      return json(res, 200, { id, object, created, model, choices: [choice], usage, prompt_logprobs: null });
    }
    const includeUsage = Boolean(
      (body.stream_options as { include_usage?: boolean } | undefined)?.include_usage,
    );
    res.writeHead(200, { "content-type": "text/event-stream; charset=utf-8" });
    const chunkObject = chat ? "chat.completion.chunk" : "text_completion";
    const send = (choices: unknown[], extra: Record<string, unknown> = {}) => {
      const ev: Record<string, unknown> = { id, object: chunkObject, created, model, choices, ...extra };
      if (includeUsage && !("usage" in extra)) ev.usage = null;
      res.write(`data: ${JSON.stringify(ev)}\n\n`);
    };
    if (opts.firstTokenDelayMs) await sleep(opts.firstTokenDelayMs);
    if (closed) return;
    if (chat)
      send([{ index: 0, delta: { role: "assistant", content: "" }, logprobs: null, finish_reason: null }]);
    for (let i = 0; i < n; i++) {
      if (closed) return;
      if (opts.tokenDelayMs) await sleep(opts.tokenDelayMs);
      if (closed) return;
      const piece = i === 0 ? "tok" : " tok";
      const last = i === n - 1;
      const fin = last ? "length" : null;
      send([
        chat
          ? {
              index: 0,
              delta: { content: piece },
              logprobs: null,
              finish_reason: fin,
              ...(last ? { stop_reason: null } : {}),
            }
          : { index: 0, text: piece, logprobs: null, finish_reason: fin, stop_reason: null },
      ]);
    }
    if (includeUsage) send([], { usage });
    res.end("data: [DONE]\n\n");
  };

  const handler = (req: IncomingMessage, res: ServerResponse) => {
    const path = (req.url ?? "/").split("?")[0]!;
    if (eng.mode === "hang") return; // accepts, never answers
    if (eng.mode === "reset") return void req.socket.destroy();
    if (eng.mode === "503") {
      req.resume();
      return json(res, 503, {
        error: { message: "engine overloaded", type: "ServiceUnavailableError", param: null, code: 503 },
      });
    }
    if (eng.mode === "dead" || eng.mode === "500") {
      req.resume();
      const message = eng.mode === "dead" ? VLLM_ENGINE_DEAD_MESSAGE : "something else went wrong";
      return json(res, 500, { error: { message, type: "InternalServerError", param: null, code: 500 } });
    }
    if (opts.apiKey && path.startsWith("/v1") && req.headers.authorization !== `Bearer ${opts.apiKey}`) {
      req.resume();
      return json(res, 401, { error: "Unauthorized" });
    }
    if (req.method === "GET" && path === "/health") {
      if (eng.healthMode === "hang") return;
      res.writeHead(eng.healthMode === "503" ? 503 : 200, { "content-length": 0 });
      return void res.end();
    }
    if (req.method === "GET" && path === "/v1/models") return json(res, 200, modelCards());
    if (req.method === "GET" && path === "/metrics") {
      res.writeHead(200, { "content-type": "text/plain; version=0.0.4" });
      return void res.end(metrics());
    }
    eng.lastHeaders = req.headers;
    if (req.method === "POST" && (path === "/v1/chat/completions" || path === "/v1/completions")) {
      eng.hits++;
      return void generate(req, res, path === "/v1/chat/completions");
    }
    if (req.method === "POST") {
      eng.hits++;
      // echo endpoints (tokenize, embeddings, audio ...): report what arrived
      void readAll(req).then((text) => {
        eng.lastBody = text;
        json(res, 200, {
          path,
          bytes: Buffer.byteLength(text),
          contentType: req.headers["content-type"] ?? null,
        });
      });
      return;
    }
    json(res, 404, { error: { message: "not found", type: "NotFoundError", param: null, code: 404 } });
  };

  const listen = (port: number) =>
    new Promise<void>((resolve, reject) => {
      const srv = createServer(handler);
      srv.keepAliveTimeout = 60_000;
      srv.on("connection", (s: Socket) => {
        sockets.add(s);
        s.on("close", () => sockets.delete(s));
      });
      srv.once("error", reject);
      srv.listen(port, "127.0.0.1", () => {
        server = srv;
        eng.port = (srv.address() as AddressInfo).port;
        eng.url = `http://127.0.0.1:${eng.port}`;
        resolve();
      });
    });
  await listen(opts.port ?? 0);
  return eng;
}
