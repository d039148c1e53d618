// A recording stand-in for a vLLM 0.32 engine's whole HTTP surface, for the endpoint-table tests: every
// relayed route answers with what it received (method, path, body), so a test can tell which engine a
// request reached and that it arrived untouched; the Responses API keeps stored responses in this
// engine's memory only, as vLLM does, and answers vLLM's 404 for an id it does not hold; GET
// /kv_event_sources answers what the test says. No timers are left behind: every answer is immediate.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo, Socket } from "node:net";

export interface FakeVllmOptions {
  models?: string[];
  /** the body of GET /kv_event_sources; undefined answers 404 (an engine older than vLLM 0.32) */
  kvEventSources?: unknown;
  /** vllm:cache_config_info's prefix_caching_hash_algo (the router reads KV events only with sha256_cbor) */
  hashAlgo?: string;
  blockSize?: number;
  version?: string;
}

export interface Recorded {
  method: string;
  path: string;
  /** path and query as they arrived */
  url: string;
  body: string;
  headers: IncomingMessage["headers"];
}

export interface FakeVllm {
  url: string;
  port: number;
  /** requests to relayed routes, oldest first (probes and scrapes are not recorded) */
  seen: Recorded[];
  /** response ids this engine stored */
  stored: Set<string>;
  /** GETs of /kv_event_sources */
  kvSourceAsks: number;
  opts: FakeVllmOptions;
  close(): Promise<void>;
}

const PROBES = new Set(["/health", "/v1/models", "/metrics", "/version", "/kv_event_sources"]);

function json(res: ServerResponse, status: number, value: unknown): void {
  const body = JSON.stringify(value);
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(body) });
  res.end(body);
}

function notFound(res: ServerResponse, id: string): void {
  json(res, 404, {
    error: {
      message: `Response with id '${id}' not found.`,
      type: "invalid_request_error",
      param: "response_id",
      code: 404,
    },
  });
}

export async function startFakeVllm(name: string, opts: FakeVllmOptions = {}): Promise<FakeVllm> {
  const models = opts.models ?? ["fake/model-a"];
  const sockets = new Set<Socket>();
  let ids = 0;
  const eng: FakeVllm = {
    url: "",
    port: 0,
    seen: [],
    stored: new Set(),
    kvSourceAsks: 0,
    opts,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };

  const metrics = () =>
    [
      "# TYPE vllm:num_requests_running gauge",
      `vllm:num_requests_running{engine="0",model_name="${models[0]}"} 0.0`,
      "# TYPE vllm:num_requests_waiting gauge",
      `vllm:num_requests_waiting{engine="0",model_name="${models[0]}"} 0.0`,
      "# TYPE vllm:kv_cache_usage_perc gauge",
      `vllm:kv_cache_usage_perc{engine="0",model_name="${models[0]}"} 0`,
      "# TYPE vllm:cache_config_info gauge",
      `vllm:cache_config_info{block_size="${opts.blockSize ?? 16}",enable_prefix_caching="True",engine="0",num_gpu_blocks="2048",prefix_caching_hash_algo="${opts.hashAlgo ?? "sha256"}"} 1.0`,
      "",
    ].join("\n");

  /** POST /v1/responses: stores the answer here; a previous_response_id must be one stored here */
  const responses = (res: ServerResponse, body: Record<string, unknown>) => {
    const prev = body.previous_response_id;
    if (typeof prev === "string" && !eng.stored.has(prev)) return notFound(res, prev);
    const id = `resp_${name}${++ids}`;
    eng.stored.add(id);
    const answer = {
      id,
      object: "response",
      status: "completed",
      model: body.model,
      output: [{ id: `msg_${ids}`, type: "message", role: "assistant", content: [] }],
      previous_response_id: prev ?? null,
      engine: name,
    };
    if (body.stream !== true) return json(res, 200, answer);
    res.writeHead(200, { "content-type": "text/event-stream; charset=utf-8" });
    const ev = (type: string, response: unknown) =>
      `event: ${type}\ndata: ${JSON.stringify({ type, sequence_number: 0, response })}\n\n`;
    res.write(ev("response.created", { ...answer, status: "in_progress", output: [] }));
    res.end(ev("response.completed", answer));
  };

  const handler = (req: IncomingMessage, res: ServerResponse) => {
    const path = (req.url ?? "/").split("?")[0]!;
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const text = Buffer.concat(chunks).toString("utf8");
      if (req.method === "GET" && PROBES.has(path)) {
        if (path === "/health") {
          res.writeHead(200, { "content-length": 0 });
          return void res.end();
        }
        if (path === "/v1/models")
          return json(res, 200, {
            object: "list",
            data: models.map((id) => ({ id, object: "model", root: id, parent: null, max_model_len: 8192 })),
          });
        if (path === "/metrics") {
          res.writeHead(200, { "content-type": "text/plain; version=0.0.4" });
          return void res.end(metrics());
        }
        if (path === "/kv_event_sources") {
          eng.kvSourceAsks++;
          if (opts.kvEventSources === undefined) return json(res, 404, { detail: "Not Found" });
          return json(res, 200, opts.kvEventSources);
        }
        // /version is a relayed route too (the router's own probe of it carries no X-Request-Id)
        if (req.headers["x-request-id"] !== undefined)
          eng.seen.push({ method: "GET", path, url: req.url ?? path, body: text, headers: req.headers });
        return json(res, 200, { version: opts.version ?? "0.32.0", engine: name });
      }
      eng.seen.push({
        method: req.method ?? "",
        path,
        url: req.url ?? path,
        body: text,
        headers: req.headers,
      });
      let body: Record<string, unknown> = {};
      try {
        body = text ? (JSON.parse(text) as Record<string, unknown>) : {};
      } catch {
        // multipart or empty: echoed as bytes
      }
      // a test may ask for any status, to see it relayed as it is (a body field: the router relays
      // only the headers vLLM reads)
      const status = Number(body.fake_status ?? 200);
      if (status === 200 && req.method === "POST" && path === "/v1/responses") return responses(res, body);
      const m = /^\/v1\/responses\/([^/]+)(\/cancel)?$/.exec(path);
      if (status === 200 && m && m[1] !== "render" && m[1] !== "derender") {
        const id = decodeURIComponent(m[1]!);
        if (!eng.stored.has(id)) return notFound(res, id);
        return json(res, 200, {
          id,
          object: "response",
          status: m[2] ? "cancelled" : "completed",
          engine: name,
        });
      }
      json(res, status, {
        engine: name,
        method: req.method,
        path,
        bytes: Buffer.byteLength(text),
        body: text,
      });
    });
  };

  const server: Server = createServer(handler);
  server.keepAliveTimeout = 60_000;
  server.on("connection", (s: Socket) => {
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve());
  });
  eng.port = (server.address() as AddressInfo).port;
  eng.url = `http://127.0.0.1:${eng.port}`;
  return eng;
}
