// The approximate, tokenizer-free prefix index of the `prefix` policy: the rendered prompt is cut into
// fixed character blocks, each block's id chains its parent's (so equal ids mean equal prefixes), and
// each id remembers which engines were last sent a request carrying it. Bounded: at most `maxBlocks`
// ids, least recently used evicted first, at most `maxEnginesPerBlock` engines per id.
import { contentText, type ChatMessage } from "../../protocol/chat-messages.js";
import { NumberLruMap } from "../../collections/number-lru-map.js";
import type { RequestView } from "../policy/views.js";

export interface PrefixIndexOptions {
  /** characters per block; 64 characters ≈ 16 tokens of English, llm-d's equivalent */
  blockChars?: number;
  /** ids kept in all (LRU beyond) */
  maxBlocks?: number;
  /** engines remembered per id (the least recent one is dropped beyond) */
  maxEnginesPerBlock?: number;
  /** prompt blocks looked at per request (longer prompts: the rest is ignored) */
  maxBlocksPerRequest?: number;
}

/**
 * Bytes one id costs (its share of the table's slots, half of them free or more, and its engines),
 * measured with --expose-gc at the cap, typed arrays included (bench/micro/routing-indexes.ts): 56
 * with one engine per id, 117 with two (their array), 147 with four; as a block's share and each
 * engine's, 20 + 36 per engine.
 */
export const PREFIX_BYTES_PER_BLOCK = 20;
export const PREFIX_BYTES_PER_ENGINE_REF = 36;

const DEFAULTS: Required<PrefixIndexOptions> = {
  blockChars: 64,
  maxBlocks: 200_000,
  maxEnginesPerBlock: 16,
  maxBlocksPerRequest: 4096,
};

/** The text a request's prefix is judged by: the prompt, or the chat messages with their roles. */
export function renderForPrefix(req: Pick<RequestView, "prompt" | "messages">): string {
  const messages = req.messages;
  if (Array.isArray(messages)) {
    let out = "";
    for (const msg of messages as ChatMessage[]) {
      if (!msg || typeof msg !== "object") continue;
      out += `<${String(msg.role)}>\n${contentText(msg.content)}\n`;
    }
    return out;
  }
  const prompt = req.prompt;
  if (typeof prompt === "string") return prompt;
  if (Array.isArray(prompt) && typeof prompt[0] === "string") return prompt[0] as string;
  return tokenIdPrompt(req)?.join(" ") ?? "";
}

/** a token-id prompt (the array renderForPrefix joins), or undefined for text and chats */
function tokenIdPrompt(req: Pick<RequestView, "prompt" | "messages">): readonly unknown[] | undefined {
  if (Array.isArray(req.messages)) return undefined;
  const prompt = req.prompt;
  if (!Array.isArray(prompt) || prompt.length === 0) return undefined;
  if (typeof prompt[0] === "number") return prompt;
  if (Array.isArray(prompt[0])) return prompt[0] as unknown[];
  return undefined;
}

// process-wide: a scratch buffer, the rendered ids' characters (ASCII), reused by every index in the
// process (a decision is synchronous, so no two use it at once); at most the limit's size
const scratch = { idBytes: new Uint8Array(0) };
// UTF-8, which every build of the platform decodes (ASCII reads the same in it)
const ascii = new TextDecoder();

function decimalDigits(value: number): number {
  if (value < 10) return 1;
  if (value < 100) return 2;
  if (value < 1_000) return 3;
  if (value < 10_000) return 4;
  if (value < 100_000) return 5;
  if (value < 1_000_000) return 6;
  if (value < 10_000_000) return 7;
  if (value < 100_000_000) return 8;
  if (value < 1_000_000_000) return 9;
  return 10;
}

/**
 * A token-id prompt's text as renderForPrefix renders it (the ids joined by spaces), written only as
 * far as `limit` characters, and the whole text's length: joining every id of a 75k-token prompt
 * cost 2.6–6 ms of its routing decision, where the index reads at most its first blocks. Undefined
 * when an element is not an integer in [0, 2^31) (then the join renders it).
 */
function renderTokenIds(
  tokens: readonly unknown[],
  limit: number,
): { text: string; chars: number } | undefined {
  // an id is at most 10 digits and a space; one past the limit (16 more) may be written whole
  const need = Math.min(limit, tokens.length * 11) + 16;
  if (scratch.idBytes.length < need) scratch.idBytes = new Uint8Array(need);
  const out = scratch.idBytes;
  let len = 0;
  let chars = Math.max(0, tokens.length - 1);
  for (let t = 0; t < tokens.length; t++) {
    const token = tokens[t];
    if (typeof token !== "number" || (token | 0) !== token || token < 0) return undefined;
    const digits = decimalDigits(token);
    chars += digits;
    if (len >= limit) continue;
    if (t > 0) out[len++] = 32;
    let rest = token;
    for (let i = len + digits - 1; i >= len; i--) {
      const quotient = (rest / 10) | 0;
      out[i] = 48 + rest - quotient * 10;
      rest = quotient;
    }
    len += digits;
  }
  return { text: ascii.decode(out.subarray(0, len)), chars };
}

/**
 * Chained block ids of `text` (one per full block), namespaced by `model`. Two 32-bit FNV/murmur
 * lanes give 53-bit ids: collisions are negligible at the index's size.
 */
export function charBlockIds(text: string, model: string, blockChars: number, maxBlocks: number): number[] {
  const blockCount = Math.min(Math.floor(text.length / blockChars), maxBlocks);
  const ids: number[] = new Array(blockCount);
  let hashA = 0x811c9dc5;
  let hashB = 0x9e3779b9;
  for (let i = 0; i < model.length; i++) {
    hashA = Math.imul(hashA ^ model.charCodeAt(i), 0x01000193);
    hashB = Math.imul(hashB ^ model.charCodeAt(i), 0x85ebca6b);
  }
  for (let k = 0; k < blockCount; k++) {
    const end = (k + 1) * blockChars;
    for (let i = k * blockChars; i < end; i++) {
      const code = text.charCodeAt(i);
      hashA = Math.imul(hashA ^ code, 0x01000193);
      hashB = Math.imul(hashB ^ code, 0x85ebca6b);
      hashB ^= hashB >>> 15;
    }
    hashA ^= hashA >>> 13;
    hashA = Math.imul(hashA, 0xc2b2ae35);
    ids[k] = (hashA >>> 0) * 0x200000 + ((hashB >>> 0) & 0x1fffff);
  }
  return ids;
}

/**
 * A request's block ids (at most `maxBlocks` of `blockChars` characters) and its rendered length, as
 * an index with those options reads it: a pure function of the request, so a worker thread can make
 * them ahead of the decision (src/router/kv/prompt-thread.ts).
 */
export function promptBlockIds(
  req: Pick<RequestView, "prompt" | "messages" | "model">,
  blockChars: number,
  maxBlocks: number,
): { ids: number[]; chars: number } {
  const tokens = tokenIdPrompt(req);
  const rendered = tokens && renderTokenIds(tokens, blockChars * maxBlocks);
  if (rendered)
    return { ids: charBlockIds(rendered.text, req.model, blockChars, maxBlocks), chars: rendered.chars };
  const text = renderForPrefix(req);
  return { ids: charBlockIds(text, req.model, blockChars, maxBlocks), chars: text.length };
}

/**
 * The engines an id was sent to, most recent last: one as its id, several as an array (never shorter
 * than two). Most ids have one, and an array for each was one more object per id to collect.
 */
type Holders = string | string[];

const holderCount = (holders: Holders): number => (typeof holders === "string" ? 1 : holders.length);

/** `holders` with `engine` made the newest, at most `max` kept (an array is changed in place if it can) */
function sentTo(holders: Holders, engine: string, max: number): Holders {
  if (typeof holders === "string") return holders === engine || max < 2 ? engine : [holders, engine];
  // most blocks of a shared prefix have it as their newest already
  const last = holders.length - 1;
  const at = holders[last] === engine ? last : holders.indexOf(engine);
  if (at >= 0) {
    for (let i = at; i < last; i++) holders[i] = holders[i + 1]!;
    holders[last] = engine;
    return holders;
  }
  // a new array of the exact size: push would grow a two-slot array to nineteen
  const more = holders.concat(engine);
  if (more.length > max) more.shift();
  return more;
}

export class PrefixIndex {
  readonly opts: Required<PrefixIndexOptions>;
  /**
   * id → engines holding it (most recent last), least recently touched id first. In typed arrays
   * (NumberLruMap): every pick learns each of its prompt's ids, and a lookup in a Map of 200,000 ids
   * was several cache misses (a Map used as the LRU, before that, made each eviction walk past the
   * deleted slots: 684 µs per 125-block request at the cap; bench/micro/routing-indexes.ts).
   */
  private readonly blocks = new NumberLruMap<Holders>();
  private refs = 0;
  evictions = 0;
  /**
   * Told of every insert made through `insert`: router workers and replicas send them to each other
   * and apply the others' with `insertFrom`, so each index learns every pick of the group. Returning
   * true takes the insert over: a router worker learns a pick once it is confirmed, with `insertFrom`.
   */
  onInsert: ((ids: readonly number[], engine: string) => boolean | void) | undefined;

  constructor(opts: PrefixIndexOptions = {}) {
    this.opts = { ...DEFAULTS, ...opts };
  }

  get size(): number {
    return this.blocks.size;
  }

  /** (id, engine) pairs held */
  get engineRefs(): number {
    return this.refs;
  }

  /** what the index costs, by the per-entry figures above */
  approxBytes(): number {
    return this.blocks.size * PREFIX_BYTES_PER_BLOCK + this.refs * PREFIX_BYTES_PER_ENGINE_REF;
  }

  /** the most the index can cost at its caps */
  capBytes(): number {
    return this.opts.maxBlocks * (PREFIX_BYTES_PER_BLOCK + 2 * PREFIX_BYTES_PER_ENGINE_REF);
  }

  ids(req: Pick<RequestView, "prompt" | "messages" | "model">): { ids: number[]; chars: number } {
    return promptBlockIds(req, this.opts.blockChars, this.opts.maxBlocksPerRequest);
  }

  /**
   * Longest run of leading ids each engine holds, in blocks. `engines` lists the candidates;
   * `out[i]` gets engine i's matched blocks. Engines marked in `skip` are not looked up (0): their
   * caller predicts them otherwise (the router's exact KV index).
   */
  match(
    ids: readonly number[],
    engines: readonly { id: string }[],
    out: Float64Array,
    skip?: Uint8Array,
  ): void {
    out.fill(0);
    let alive = engines.length;
    const done = new Uint8Array(engines.length);
    if (skip)
      for (let i = 0; i < engines.length; i++)
        if (skip[i]) {
          done[i] = 1;
          alive--;
        }
    for (let k = 0; k < ids.length && alive > 0; k++) {
      const holders = this.blocks.get(ids[k]!);
      if (holders === undefined) break;
      for (let i = 0; i < engines.length; i++) {
        if (done[i]) continue;
        const id = engines[i]!.id;
        if (typeof holders === "string" ? holders === id : holders.includes(id)) out[i] = k + 1;
        else {
          done[i] = 1;
          alive--;
        }
      }
    }
  }

  /** Records that `engine` was sent a request with these ids (it will hold them once it prefilled). */
  insert(ids: readonly number[], engine: string): void {
    if (this.onInsert?.(ids, engine) === true) return;
    this.insertFrom(ids, engine);
  }

  /** `insert` of another router's pick: learned the same way, not told to `onInsert`. */
  insertFrom(ids: readonly number[], engine: string): void {
    // Newest-last LRU: walking from the tail makes block 0 the most recent, so eviction trims chains
    // from their ends and never leaves an unreachable tail behind a missing head.
    for (let k = ids.length - 1; k >= 0; k--) {
      const id = ids[k]!;
      const slot = this.blocks.find(id);
      if (slot >= 0) {
        const holders = this.blocks.valueAt(slot);
        const now = sentTo(holders, engine, this.opts.maxEnginesPerBlock);
        this.blocks.setValueAt(slot, now);
        this.blocks.touch(slot);
        this.refs += holderCount(now) - holderCount(holders);
      } else {
        this.blocks.add(id, engine);
        this.refs++;
      }
    }
    while (this.blocks.size > this.opts.maxBlocks) {
      this.refs -= holderCount(this.blocks.shift()!);
      this.evictions++;
    }
  }

  /** Forgets an engine everywhere (it left the fleet, restarted, or cleared its cache). */
  purge(engine: string): number {
    let removed = 0;
    this.blocks.rewriteValues((holders) => {
      const at = typeof holders === "string" ? (holders === engine ? 0 : -1) : holders.indexOf(engine);
      if (at < 0) return holders;
      removed++;
      if (typeof holders === "string") return undefined;
      if (holders.length === 2) return holders[1 - at]!;
      holders.splice(at, 1);
      return holders;
    });
    this.refs -= removed;
    return removed;
  }

  /** engines with at least one id (for tests and /engines) */
  enginesHeld(): Set<string> {
    const engineIds = new Set<string>();
    for (const holders of this.blocks.values())
      if (typeof holders === "string") engineIds.add(holders);
      else for (const engineId of holders) engineIds.add(engineId);
    return engineIds;
  }
}
