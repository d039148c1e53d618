// A minimal engine stand-in for the tenancy/hardening runs (fuzz, 10k streams, chaos): /health,
// /v1/models, /metrics, and generation endpoints that answer any JSON body. Streams send
// `max_tokens` chunks `tokenIntervalMs` apart (the usage event when asked); JSON answers at once
// with usage. A fault mode, set in-process or by `POST /fault/<mode>`, makes it misbehave the way
// the chaos run needs: hang (accept, never answer), slow (10× the interval), 5xx (503), reset
// (destroy the socket; over h2c, reset the stream), ok. Not the sim: cheap enough that one process can
// hold 10 000 streams. `--h2c` serves cleartext HTTP/2 only (no HTTP/1.1 fallback), the way an
// h2c-speaking proxy in front of engines would be reached by the router's `protocol: h2c` backends.
// `--context` answers with bench/support/context-model.ts's toy model instead of " tok" (each token a function
// of the whole context, vLLM's return_token_ids and continue_final_message), so that a stream moved
// mid-answer to another engine can be checked against an unbroken one (the chaos run).
//   node --import tsx bench/support/fakes/tenancy-upstream.ts PORT [TOKEN_INTERVAL_MS] [--h2c] [--context]
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { createServer as createH2cServer, type Http2Server, type Http2ServerResponse } from "node:http2";
import type { AddressInfo, Socket } from "node:net";
import { nextTokens, promptIds, textOf } from "../context-model.js";

export type UpstreamFault = "ok" | "hang" | "slow" | "5xx" | "reset";

export interface UpstreamOptions {
  port?: number;
  host?: string;
  model?: string;
  /** gap between streamed chunks; 0 = back to back */
  tokenIntervalMs?: number;
  /** cap on max_tokens honoured per request */
  maxTokens?: number;
  /** delay before the first token (or the JSON answer), uniform in [min, max] ms; 0 by default */
  firstTokenMs?: [number, number];
  /** http1 (default) or h2c: cleartext HTTP/2 only */
  protocol?: "http1" | "h2c";
  /** h2c: SETTINGS_MAX_CONCURRENT_STREAMS advertised per connection (default 1000) */
  h2cMaxStreams?: number;
  /** answer with the toy context model (bench/support/context-model.ts) rather than " tok" */
  context?: boolean;
}

/** The part of a response both node:http and the node:http2 compatibility API offer. */
interface Reply {
  writeHead(status: number, headers?: Record<string, string | number>): unknown;
  write(chunk: string): boolean;
  end(chunk?: string): unknown;
  on(event: "close", fn: () => void): unknown;
}

/** the client (or the router) is gone: over h2 the stream, not the response, knows */
function gone(res: ServerResponse | Http2ServerResponse): boolean {
  return "stream" in res ? res.stream.destroyed || res.stream.closed : res.destroyed;
}

export interface TenancyEngine {
  url: string;
  port: number;
  fault: UpstreamFault;
  /** generation requests answered or in progress */
  requests: number;
  /** streams open now */
  open: number;
  close(): Promise<void>;
}

const FAULTS = new Set<UpstreamFault>(["ok", "hang", "slow", "5xx", "reset"]);

export async function startUpstream(opts: UpstreamOptions = {}): Promise<TenancyEngine> {
  const model = opts.model ?? "bench/m";
  const interval = opts.tokenIntervalMs ?? 0;
  const maxTokens = opts.maxTokens ?? 4096;
  const models = JSON.stringify({
    object: "list",
    data: [{ id: model, object: "model", created: 1, owned_by: "vllm", root: model, parent: null }],
  });
  const sockets = new Set<Socket>();
  const timers = new Set<NodeJS.Timeout>();
  const up: TenancyEngine = {
    url: "",
    port: 0,
    fault: "ok",
    requests: 0,
    open: 0,
    close: async () => {
      for (const t of timers) clearTimeout(t);
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };

  const [ftMin, ftMax] = opts.firstTokenMs ?? [0, 0];
  const firstDelay = () => ftMin + Math.random() * (ftMax - ftMin);
  type Req = Pick<IncomingMessage, "url" | "method" | "resume" | "on">;
  type Res = ServerResponse | Http2ServerResponse;
  const generate = (req: Req, res: Res, body: Buffer) => {
    const d = firstDelay();
    if (d <= 0) return answer(req, res, body);
    const t = setTimeout(() => {
      timers.delete(t);
      if (!gone(res)) answer(req, res, body);
    }, d);
    timers.add(t);
  };
  const answer = (req: Req, raw: Res, body: Buffer) => {
    const res = raw as unknown as Reply;
    up.requests++;
    let doc: Record<string, unknown> = {};
    try {
      const v = JSON.parse(body.toString("utf8")) as unknown;
      if (v && typeof v === "object" && !Array.isArray(v)) doc = v as Record<string, unknown>;
    } catch {
      // any body gets an answer: this is a stand-in, the router is what is tested
    }
    const n = Math.max(1, Math.min(maxTokens, typeof doc.max_tokens === "number" ? doc.max_tokens | 0 : 4));
    const chat = req.url?.startsWith("/v1/chat") ?? false;
    if (opts.context) return contextAnswer(raw, doc, chat, n);
    const usage = { prompt_tokens: 5, total_tokens: 5 + n, completion_tokens: n };
    if (doc.stream !== true) {
      const text = JSON.stringify({
        id: "cmpl-1",
        object: chat ? "chat.completion" : "text_completion",
        created: 1,
        model,
        choices: [
          chat
            ? { index: 0, message: { role: "assistant", content: "ok" }, finish_reason: "length" }
            : { index: 0, text: "ok", finish_reason: "length" },
        ],
        usage,
      });
      res.writeHead(200, { "content-type": "application/json", "content-length": Buffer.byteLength(text) });
      return void res.end(text);
    }
    const so = doc.stream_options as { include_usage?: unknown } | undefined;
    const includeUsage = so?.include_usage === true;
    const piece = chat
      ? `data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"${model}","choices":[{"index":0,"delta":{"content":" tok"},"finish_reason":null}]${includeUsage ? ',"usage":null' : ""}}\n\n`
      : `data: {"id":"c","object":"text_completion","created":1,"model":"${model}","choices":[{"index":0,"text":" tok","finish_reason":null}]${includeUsage ? ',"usage":null' : ""}}\n\n`;
    const tail = includeUsage
      ? `data: {"id":"c","object":"${chat ? "chat.completion.chunk" : "text_completion"}","created":1,"model":"${model}","choices":[],"usage":${JSON.stringify(usage)}}\n\n`
      : "";
    paced(raw, n, () => piece, tail);
  };

  /** The toy model's answer, in vLLM's formats (return_token_ids where vLLM puts them). */
  const contextAnswer = (raw: Res, doc: Record<string, unknown>, chat: boolean, n: number) => {
    const res = raw as unknown as Reply;
    const prompt = promptIds(doc, chat);
    const out = nextTokens(prompt, n);
    const ids = doc.return_token_ids === true;
    const usage = { prompt_tokens: prompt.length, total_tokens: prompt.length + n, completion_tokens: n };
    const head = { id: chat ? "chatcmpl-1" : "cmpl-1", created: 1, model };
    if (doc.stream !== true) {
      const text = JSON.stringify({
        ...head,
        object: chat ? "chat.completion" : "text_completion",
        choices: [
          chat
            ? { index: 0, message: { role: "assistant", content: textOf(out) }, finish_reason: "length" }
            : { index: 0, text: textOf(out), finish_reason: "length" },
        ],
        usage,
      });
      res.writeHead(200, { "content-type": "application/json", "content-length": Buffer.byteLength(text) });
      return void res.end(text);
    }
    const so = doc.stream_options as { include_usage?: unknown } | undefined;
    const object = chat ? "chat.completion.chunk" : "text_completion";
    const event = (i: number): string => {
      const last = i === n - 1;
      const tok = { token_ids: ids ? [out[i]!] : undefined };
      const choice = chat
        ? { index: 0, delta: { content: textOf([out[i]!]) }, finish_reason: last ? "length" : null, ...tok }
        : {
            index: 0,
            text: textOf([out[i]!]),
            finish_reason: last ? "length" : null,
            prompt_token_ids: ids ? (i === 0 ? prompt : null) : undefined,
            ...tok,
          };
      return `data: ${JSON.stringify({ ...head, object, choices: [choice] })}\n\n`;
    };
    let lead = "";
    if (chat) {
      const role = { index: 0, delta: { role: "assistant", content: "" }, finish_reason: null };
      const first = { ...head, object, choices: [role], prompt_token_ids: ids ? prompt : undefined };
      lead = `data: ${JSON.stringify(first)}\n\n`;
    }
    const tail =
      so?.include_usage === true
        ? `data: ${JSON.stringify({ ...head, object, choices: [], usage })}\n\n`
        : "";
    paced(raw, n, (i) => (i === 0 ? lead : "") + event(i), tail);
  };

  /** A stream of `n` events, `interval` apart (10× when slowed), then `tail` and [DONE]. */
  const paced = (raw: Res, n: number, event: (i: number) => string, tail: string) => {
    const res = raw as unknown as Reply;
    res.writeHead(200, { "content-type": "text/event-stream; charset=utf-8" });
    up.open++;
    let sent = 0;
    let timer: NodeJS.Timeout | undefined;
    res.on("close", () => {
      up.open--;
      if (timer) {
        clearTimeout(timer);
        timers.delete(timer);
      }
    });
    const tick = () => {
      if (timer) timers.delete(timer);
      timer = undefined;
      if (gone(raw)) return;
      if (sent < n) {
        res.write(event(sent++));
        const gap = up.fault === "slow" ? Math.max(50, interval * 10) : interval;
        if (gap > 0) {
          timer = setTimeout(tick, gap);
          timers.add(timer);
        } else setImmediate(tick);
        return;
      }
      if (tail) res.write(tail);
      res.end("data: [DONE]\n\n");
    };
    tick();
  };

  const handle = (req: Req, raw: Res) => {
    const res = raw as unknown as Reply;
    const path = (req.url ?? "/").split("?")[0]!;
    if (req.method === "GET") {
      if (path === "/v1/models") {
        res.writeHead(200, { "content-type": "application/json" });
        return void res.end(models);
      }
      res.writeHead(200, { "content-type": "text/plain" });
      return void res.end(path === "/metrics" ? "vllm:num_requests_running 0\n" : "");
    }
    if (path.startsWith("/fault/")) {
      const f = path.slice(7) as UpstreamFault;
      req.resume();
      if (FAULTS.has(f)) up.fault = f;
      res.writeHead(FAULTS.has(f) ? 200 : 400);
      return void res.end();
    }
    switch (up.fault) {
      case "hang":
        return void req.resume();
      case "reset":
        // h2c: RST_STREAM(INTERNAL_ERROR) for this request; the connection carries others
        if ("stream" in raw) return void raw.stream.destroy(new Error("reset fault"));
        return void (req as IncomingMessage).socket.destroy();
      case "5xx":
        req.resume();
        res.writeHead(503, { "content-type": "application/json" });
        return void res.end(
          '{"error":{"message":"overloaded","type":"ServiceUnavailableError","param":null,"code":503}}',
        );
    }
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => generate(req, raw, Buffer.concat(chunks)));
  };
  let server: Server | Http2Server;
  if (opts.protocol === "h2c") {
    server = createH2cServer(
      {
        settings: { maxConcurrentStreams: opts.h2cMaxStreams ?? 1000 },
        // nghttp2's per-connection budget (MiB): room for that many streams' buffers
        maxSessionMemory: 64,
      },
      (req, res) => handle(req as unknown as Req, res),
    );
    server.on("stream", (st) => st.on("error", () => undefined));
  } else {
    const h1 = createServer(handle);
    h1.keepAliveTimeout = 60_000;
    server = h1;
  }
  server.on("connection", (s: Socket) => {
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(opts.port ?? 0, opts.host ?? "127.0.0.1", resolve));
  up.port = (server.address() as AddressInfo).port;
  up.url = `http://127.0.0.1:${up.port}`;
  return up;
}

if (process.argv[1] && /tenancy-upstream\.[jt]s$/.test(process.argv[1])) {
  const args = process.argv.slice(2).filter((a) => !a.startsWith("--"));
  const port = Number(args[0] ?? 0);
  const interval = Number(args[1] ?? 0);
  const protocol = process.argv.includes("--h2c") ? "h2c" : "http1";
  const context = process.argv.includes("--context");
  void startUpstream({ port, tokenIntervalMs: interval, protocol, context }).then((u) => {
    console.log(JSON.stringify({ url: u.url }));
  });
}
