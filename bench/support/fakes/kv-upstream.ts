// Fast engines that publish real KV events, for measuring what exact KV routing costs the router at a
// rate no simulated engine keeps up with on a small machine: each engine answers a completion at once
// (one token, tiny JSON), and publishes over ZMQ (src/kvevents, vLLM's wire format) a BlockStored for
// the blocks of the prompt it has not stored yet, hashed as a vLLM 0.32 engine with sha256_cbor hashes
// them, so the router's own hashes of the prompt find them. It serves what the router reads of a vLLM
// engine: /v1/models, /version, /metrics (with vllm:cache_config_info and the prefix-cache counters),
// /kv_event_sources and /health.
//
// It is a stand-in, so it may lean on the load client to stay cheap: prompts are words of letters joined
// by single spaces (each word's ids remembered, so a prompt is tokenized by lookup; checked against the
// real tokenizer at start), and the client names the shared prefix a prompt starts with in a body field
// the router relays as it relays the whole body (`"bench_prefix":"GROUP:CHARS"`; a header would not
// pass the router, which forwards only the headers an engine reads, and the engines would then tokenize
// and hash whole prompts behind the router only, loading the shared machine more in the router's run
// than in the direct one), whose ids and block hashes are computed once; only the unique tail is hashed
// per request. Where the client also says how many tokens the prompt has (`GROUP:CHARS:TOKENS`) not even
// that: the tail's blocks are the request's own, which no later prompt can match, so they are published
// under ids of their own with as many token ids as vLLM sends (the router decodes and stores them as it
// would their real hashes). `POST /bench/reset` empties every engine's cache (AllBlocksCleared published).
// Cheap per request, since it shares the machine with the router it measures: the prompt is read out of
// the raw body where the client wrote it (JSON.parse only for a body it cannot read so), and the answer
// is a template with the count filled in. Each answer says when the engine had the request and how long
// it held it (`x-bench-engine: ARRIVAL_MS,HELD_MS`, ARRIVAL on process.hrtime's clock, CLOCK_MONOTONIC,
// which every process on the machine shares), so the load client can split a request's time into the
// legs before and after the engine: the router cannot move those stamps.
//   node bench/support/fakes/kv-upstream.ts PORT,PORT,... MODEL    (prints "ready" once all listen)
import { createServer } from "node:http";
import { createServer as netServer } from "node:net";
import { ZmqEventPublisher } from "../../../src/kvevents/publisher.js";
import type { KvEvent } from "../../../src/kvevents/events.js";
import { computeBlockHashes, type BlockHashOptions } from "../../../src/protocol/block-hashing.js";
import { engineHashSeed, extraKeyStyleFor } from "../../../src/protocol/vllm-releases.js";
import { resolveModel } from "../../../src/models/profiles.js";
import { tokenizerForModel } from "../../../src/tokenizer/index.js";

const VERSION = "0.32.0";
const BLOCK = 16;
/** words remembered with their ids (the client's vocabulary is far smaller) */
const MAX_WORDS = 100_000;
/** shared prefixes remembered with their ids and hashes */
const MAX_PREFIXES = 1024;
/** events held before a batch goes out, and how often batches go out (an engine step's worth) */
const FLUSH_MS = 5;

const [portsArg, model = "meta-llama/Llama-3.1-8B-Instruct"] = process.argv.slice(2);
const tk = tokenizerForModel(resolveModel(model));
const hashOpts: BlockHashOptions = {
  blockSize: BLOCK,
  hashSeed: engineHashSeed(VERSION, undefined),
  extraKeyStyle: extraKeyStyleFor(VERSION),
};

const wordIds = new Map<string, readonly number[]>();
/** a text of letter words joined by single spaces, tokenized word by word (the byte-level pre-tokenizer splits there) */
function tokenizeWords(text: string, out: number[]): void {
  let start = 0;
  while (start < text.length) {
    let end = text.indexOf(" ", start + 1);
    if (end < 0) end = text.length;
    const w = text.slice(start, end);
    let ids = wordIds.get(w);
    if (ids === undefined) {
      ids = tk.encode(w, false);
      if (wordIds.size < MAX_WORDS) wordIds.set(w, ids);
    }
    for (let i = 0; i < ids.length; i++) out.push(ids[i]!);
    start = end;
  }
}
const WORDS_ONLY = /^[A-Za-z]+( [A-Za-z]+)*$/;
function tokenize(text: string): number[] {
  const out: number[] = tk.bosTokenId !== null ? [tk.bosTokenId] : [];
  if (!WORDS_ONLY.test(text)) return tk.encode(text, true);
  tokenizeWords(text, out);
  return out;
}
{
  // the lookup must give the tokenizer's own ids, or the router's hashes would never match these
  const sample =
    "Lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor kalomi rasoten";
  if (JSON.stringify(tokenize(sample)) !== JSON.stringify(tk.encode(sample, true))) {
    console.error("kv-upstream: word-by-word tokenizing differs from the tokenizer's; cannot stand in");
    process.exit(1);
  }
}

interface Prefix {
  text: string;
  tokens: number[];
  /** full blocks of the prefix: their digests (the chain to continue) and event ids */
  digests: Buffer[];
  ids: bigint[];
}
const prefixes = new Map<string, Prefix>();
/** ids of the blocks past a shared prefix: a range of their own, apart from any sha256 a router could compute */
const OWN_IDS = 0xb1e5n << 48n;
let nextOwnId = 0;
/** token ids published with those blocks (as many as vLLM's BlockStored carries; the router reads past them) */
const NO_TOKENS: number[] = new Array<number>(1 << 16).fill(0);

function prefixOf(key: string, prompt: string, chars: number): Prefix | null {
  let p = prefixes.get(key);
  if (p && (p.text.length !== chars || !prompt.startsWith(p.text))) p = undefined;
  if (!p) {
    if (chars <= 0 || chars > prompt.length || prompt[chars] !== " ") return null;
    const text = prompt.slice(0, chars);
    const tokens = tokenize(text);
    const h = computeBlockHashes(tokens, hashOpts);
    p = { text, tokens, digests: h.digests, ids: h.ids };
    if (prefixes.size >= MAX_PREFIXES) prefixes.delete(prefixes.keys().next().value!);
    prefixes.set(key, p);
  }
  return p;
}

class Engine {
  readonly pending: KvEvent[] = [];
  /** prefixes whose blocks this engine holds */
  readonly held = new Set<string>();
  queries = 0;
  hits = 0;
  constructor(
    readonly pub: ZmqEventPublisher,
    readonly sources: string,
  ) {}

  /** the prompt's blocks this engine had not stored, published; its prefix-cache counters moved */
  compute(prompt: string, hint: string | undefined): number {
    let tokens: number[];
    let fromBlock = 0;
    let parent: Buffer | null = null;
    let pre: Prefix | null = null;
    // GROUP:CHARS, or GROUP:CHARS:TOKENS where the client counted the prompt's tokens
    const [key, chars, count] = (hint ?? "").split(":");
    if (hint && key && chars) pre = prefixOf(`${key}:${chars}`, prompt, Number(chars));
    if (pre) {
      fromBlock = pre.ids.length;
      if (this.held.has(pre.text)) this.hits += fromBlock * BLOCK;
      else {
        this.held.add(pre.text);
        if (fromBlock > 0) this.stored(pre.ids, null, pre.tokens, 0);
      }
      const n = Number(count);
      if (Number.isInteger(n) && n >= pre.tokens.length) {
        // the blocks past the shared prefix hold the request's own words: no other prompt can match
        // them, so they go out under ids of their own (the router stores them as it would their hashes)
        const blocks = Math.floor(n / BLOCK) - fromBlock;
        if (blocks > 0) {
          const ids: bigint[] = new Array(blocks);
          for (let b = 0; b < blocks; b++) ids[b] = OWN_IDS + BigInt(nextOwnId++);
          this.stored(ids, fromBlock > 0 ? pre.ids[fromBlock - 1]! : null, NO_TOKENS, 0);
        }
        this.queries += n;
        return n;
      }
      tokens = pre.tokens.slice();
      tokenizeWords(prompt.slice(pre.text.length), tokens);
      parent = pre.digests[fromBlock - 1] ?? null;
    } else tokens = tokenize(prompt);
    const tail = computeBlockHashes(tokens, hashOpts, parent, fromBlock, fromBlock * BLOCK);
    if (tail.ids.length > 0)
      this.stored(tail.ids, fromBlock > 0 ? pre!.ids[fromBlock - 1]! : null, tokens, fromBlock * BLOCK);
    this.queries += tokens.length;
    return tokens.length;
  }

  private stored(ids: bigint[], parent: bigint | null, tokens: number[], from: number): void {
    this.pending.push({
      type: "BlockStored",
      blockHashes: ids,
      parentBlockHash: parent,
      tokenIds: tokens.slice(from, from + ids.length * BLOCK),
      blockSize: BLOCK,
      loraId: null,
      medium: "GPU",
    });
  }

  reset(): void {
    this.held.clear();
    this.pending.length = 0;
    this.pending.push({ type: "AllBlocksCleared" } as KvEvent);
  }

  flush(): void {
    if (this.pending.length === 0) return;
    this.pub.publish({ ts: Date.now() / 1000, events: this.pending.splice(0), dataParallelRank: null });
  }
}

function freeTcpPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = netServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

const [TINY_HEAD, TINY_TAIL] = JSON.stringify({
  id: "cmpl-1",
  object: "text_completion",
  created: 1,
  model,
  choices: [{ index: 0, text: "ok", logprobs: null, finish_reason: "length", stop_reason: null }],
  usage: { prompt_tokens: -1, total_tokens: -2, completion_tokens: 1 },
}).split('"prompt_tokens":-1,"total_tokens":-2') as [string, string];
const TINY = (tokens: number) =>
  `${TINY_HEAD}"prompt_tokens":${tokens},"total_tokens":${tokens + 1}${TINY_TAIL}`;

const PROMPT_KEY = Buffer.from('"prompt":"');
const PREFIX_KEY = Buffer.from('"bench_prefix":"');
const QUOTE = 0x22;
const BACKSLASH = 0x5c;
/**
 * The prompt of a completion body, read where the JSON has it without parsing the rest: the text
 * between `"prompt":"` and the next quote when no escape comes before it (the load client's prompts are
 * words and spaces); undefined where that does not hold, and the body is then parsed.
 */
function promptOf(body: Buffer): string | undefined {
  return stringField(body, PROMPT_KEY);
}

/** a string field of a JSON body at its `"key":"` where no escape comes before its closing quote */
function stringField(body: Buffer, key: Buffer): string | undefined {
  const at = body.indexOf(key);
  if (at < 0) return undefined;
  const from = at + key.length;
  const end = body.indexOf(QUOTE, from);
  if (end < 0) return undefined;
  const esc = body.indexOf(BACKSLASH, from);
  if (esc >= 0 && esc < end) return undefined;
  return body.toString("utf8", from, end);
}

const nowMs = () => Number(process.hrtime.bigint()) / 1e6;

async function engine(port: number, all: Engine[]): Promise<Engine> {
  const pubPort = await freeTcpPort();
  const replayPort = await freeTcpPort();
  const cfg = {
    enabled: true,
    publisher: "zmq" as const,
    endpoint: `tcp://*:${pubPort}`,
    replayEndpoint: `tcp://*:${replayPort}`,
    topic: "",
    bufferSteps: 10_000,
    hwm: 100_000,
    maxQueueSize: 100_000,
  };
  const pub = await ZmqEventPublisher.create(cfg, { bindHost: "127.0.0.1" });
  const sources = JSON.stringify({
    "0": {
      enable_kv_cache_events: true,
      publisher: "zmq",
      endpoint: cfg.endpoint,
      replay_endpoint: cfg.replayEndpoint,
      topic: "",
    },
  });
  const e = new Engine(pub, sources);
  const models = JSON.stringify({
    object: "list",
    data: [{ id: model, object: "model", root: model, parent: null, max_model_len: 131072 }],
  });
  const labels = `model_name="${model}",engine="0"`;
  const server = createServer((req, res) => {
    if (req.method === "GET") {
      const json = (s: string) => {
        res.writeHead(200, { "content-type": "application/json" });
        res.end(s);
      };
      if (req.url === "/v1/models") return json(models);
      if (req.url === "/version") return json(JSON.stringify({ version: VERSION }));
      if (req.url === "/kv_event_sources") return json(e.sources);
      res.writeHead(200, { "content-type": "text/plain" });
      if (req.url !== "/metrics") return void res.end("");
      return void res.end(
        `vllm:num_requests_running{${labels}} 0\nvllm:num_requests_waiting{${labels}} 0\n` +
          `vllm:kv_cache_usage_perc{${labels}} 0.1\n` +
          `vllm:prefix_cache_queries_total{${labels}} ${e.queries}\n` +
          `vllm:prefix_cache_hits_total{${labels}} ${e.hits}\n` +
          `vllm:cache_config_info{${labels},block_size="${BLOCK}",enable_prefix_caching="True",prefix_caching_hash_algo="sha256_cbor",num_gpu_blocks="1000000"} 1\n`,
      );
    }
    const arrived = nowMs();
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      if (req.url === "/bench/reset") {
        for (const x of all) x.reset();
        res.writeHead(200, { "content-type": "text/plain" });
        return void res.end("reset");
      }
      let tokens = 1;
      try {
        const raw = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
        let prompt = promptOf(raw);
        let hint = stringField(raw, PREFIX_KEY);
        if (prompt === undefined) {
          const body = JSON.parse(raw.toString("utf8")) as { prompt?: unknown; bench_prefix?: unknown };
          if (typeof body.prompt === "string") prompt = body.prompt;
          if (typeof body.bench_prefix === "string") hint = body.bench_prefix;
        }
        if (prompt !== undefined) tokens = e.compute(prompt, hint);
      } catch {
        res.writeHead(400, { "content-type": "application/json" });
        return void res.end('{"error":{"message":"bad body"}}');
      }
      const out = TINY(tokens);
      res.writeHead(200, {
        "content-type": "application/json",
        "content-length": Buffer.byteLength(out),
        "x-bench-engine": `${arrived.toFixed(3)},${(nowMs() - arrived).toFixed(3)}`,
      });
      res.end(out);
    });
  });
  server.keepAliveTimeout = 60_000;
  await new Promise<void>((resolve) => server.listen(port, "127.0.0.1", resolve));
  return e;
}

const engines: Engine[] = [];
for (const p of (portsArg ?? "").split(",").filter(Boolean)) engines.push(await engine(Number(p), engines));
setInterval(() => {
  for (const e of engines) e.flush();
}, FLUSH_MS);
process.on("SIGTERM", () => {
  void Promise.all(engines.map((e) => e.pub.close())).finally(() => process.exit(0));
});
console.log("ready");
