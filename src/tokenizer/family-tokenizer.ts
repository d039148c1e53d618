// One Tokenizer built from parts: an ordinary-text BPE encoder, the added tokens recognised in text,
// a decode table covering the model's whole vocabulary, and a chat template.
import { WorkCancelled, nextTurn, waitingSlices, type Cancellable } from "../eventloop/turns.js";
import { detached } from "../collections/detached.js";
import { LruMap } from "../collections/lru-map.js";
import { VocabTable, type AddedToken } from "./byte-level.js";
import { renderChat, type ChatTemplate } from "./chat-templates.js";
import { buildOutputPool, type OutputPool } from "./output-pool.js";
import { tokenizerThread } from "./offload.js";
import type { ChatTemplateOptions, Tokenizer } from "./types.js";
import type { ChatMessage } from "../protocol/chat-messages.js";

export interface FamilyParts {
  family: string;
  vocabSize: number;
  eosTokenId: number;
  bosTokenId: number | null;
  hasChatTemplate: boolean;
  addedTokens: readonly AddedToken[];
  /** BPE of text that contains no added token; never adds BOS/EOS */
  encodeOrdinary: (text: string) => number[];
  table: VocabTable;
  template: ChatTemplate;
  /**
   * ids `encode(text, true)` puts before and after the text (a folder's post-processor may add more
   * than a BOS, or an EOS after); default: the BOS alone
   */
  prefixIds?: readonly number[];
  suffixIds?: readonly number[];
  /**
   * false when cutting text at safeCut points may change its ids (a pre-tokenizer other than the
   * byte-level ones, a normalizer that reads across the cut): long text then goes to the worker
   * thread whole instead of in slices here
   */
  sliceable?: boolean;
  /**
   * true when encodeOrdinary recognises added tokens itself and must see them in place (added tokens
   * with lstrip/rstrip/single_word, or matched after normalisation): text is then not split here
   */
  encoderSplitsAdded?: boolean;
  /** ids to try as output words when the English word list finds too few (output-pool.ts) */
  poolCandidates?: () => Iterable<number>;
  /**
   * text up to this length is encoded at once (default SYNC_ENCODE_CHARS): a slower encoder (a
   * folder's, through @huggingface/tokenizers, ~1-3 µs a character) takes a smaller one so that no
   * encode holds the event loop for more than a few milliseconds
   */
  syncEncodeChars?: number;
}

/**
 * Short text segments repeat constantly (template glue such as "\n\nCutting Knowledge Date: ...",
 * role names, common system prompts), so their ids are cached: an LRU bounded in entries and in
 * segment length, since long user text rarely repeats and would only churn the cache.
 */
const SEGMENT_CACHE_ENTRIES = 4096;
const SEGMENT_CACHE_MAX_CHARS = 256;

/**
 * encodeAsync: text up to this length is encoded at once (well under a millisecond); longer text in
 * slices between turns of the event loop, each sized to take about SLICE_TARGET_MS, so that a
 * megabyte prompt never holds the loop (a 5 MB one took 4 s in one piece before the piece cache).
 * How fast a text encodes is known only once a slice of it has been: text the piece cache has
 * never seen runs about 40x slower than text it knows (16,384 characters of made-up words took
 * ~40 ms, of ordinary text ~0.4 ms). So a long encode's first slice is sized by the pace of the last
 * slice this tokenizer encoded: after fast text it is SYNC_ENCODE_CHARS, after slow text a few
 * milliseconds' worth. In a burst of novel prompts only the first then holds the loop for long
 * (eight at once held it 0.3-0.5 s when each began with SYNC_ENCODE_CHARS), while ordinary traffic
 * keeps its one large first slice: every extra slice is an extra turn of the loop before the request
 * is routed, and smaller first slices for all cost router workers ~17% of TTFT p50 in an A/B.
 */
export const SYNC_ENCODE_CHARS = 16_384;
const SLICE_TARGET_MS = 2;
/**
 * characters a piece of work encodes as what it is (oldest first, eventloop/turns.ts) before its
 * further slices queue as new work: ~20-50 ms of slices, far more than an ordinary long prompt needs,
 * so a huge one takes turns with the prompts that came after it instead of holding every one of them
 * back
 */
const OLDEST_FIRST_CHARS = 262_144;
/** about 2.5 ms of never-seen text: the least any slice is given */
const SLICE_MIN_CHARS = 1_024;
const SLICE_MAX_CHARS = 262_144;
/** a stretch without a cut point longer than this goes to the worker thread (offload.ts) */
const OFFLOAD_CHARS = 16_384;
/** countAsync: text longer than this is counted on the worker thread once it is warm (it keeps the
 * main loop's CPU and garbage out of megabyte prompts; its ids are rarely all needed) */
const COUNT_ON_WORKER_CHARS = 262_144;
/** the worker thread checks whether its count is still wanted this often: ~25-150 ms of text */
const WORKER_CHUNK_CHARS = 65_536;

/** Cuts `out` to its first `keep` ids; returns how many it cut (they still count). */
function keepFirst(out: number[], keep: number): number {
  if (out.length <= keep) return 0;
  const cut = out.length - keep;
  out.length = keep;
  return cut;
}

function isAsciiLetter(c: number): boolean {
  return (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a);
}

/**
 * The first position at or after `from` where the text can be cut without changing its ids: before
 * a space that sits between two ASCII letters ("abc| def"). Every family's pre-tokenizer (Llama 3's,
 * cl100k's, GPT-2's) ends a piece of letters there and starts the next one (" def") exactly there,
 * and BPE never merges across pieces; no added token holds whitespace (checked at construction), so
 * none is cut. Whitespace must not end a slice: GPT-2's `\s+(?!\S)` reads the end of a slice as the
 * end of the text ("\n\n|Against" encodes as one piece instead of two). The text's end when there is
 * no such point (the rest is then encoded at once).
 */
export function safeCut(text: string, from: number): number {
  const n = text.length;
  for (let i = Math.max(1, from); i < n - 1; i++) {
    if (
      text.charCodeAt(i) === 0x20 &&
      isAsciiLetter(text.charCodeAt(i - 1)) &&
      isAsciiLetter(text.charCodeAt(i + 1))
    )
      return i;
  }
  return n;
}

/**
 * A long text is encoded (encodeAsync, countAsync) in chunks of at least CHUNK_CHARS, each ending at
 * the first cut point (safeCut) past that: the grid depends only on the text up to each cut, so texts
 * that share a prefix share its chunks, whose ids are remembered (LRU, CHUNK_CACHE_CHARS characters).
 */
export const CHUNK_CHARS = 512;
const CHUNK_CACHE_CHARS = 2_000_000;
const CHUNK_CACHE_ENTRIES = 16_384;

/** the end of the chunk of `text` that starts at `pos` (a cut point, or 0) */
export function chunkEnd(text: string, pos: number): number {
  return safeCut(text, pos + CHUNK_CHARS);
}

function escapeRegex(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

export class FamilyTokenizer implements Tokenizer {
  readonly family: string;
  readonly vocabSize: number;
  readonly eosTokenId: number;
  readonly bosTokenId: number | null;
  readonly hasChatTemplate: boolean;
  readonly addedTokens: ReadonlyMap<string, number>;
  readonly outputPool: OutputPool;
  private readonly parts: FamilyParts;
  /** longest content first, so "<|reserved_special_token_10|>" never loses to a shorter prefix */
  private readonly addedRegex: RegExp | null;
  /** every added token here starts with one of these chars: text without them skips the split */
  private readonly addedFirstChars: string;
  /** an LruMap: deleting and re-inserting a Map's key on every hit made each drop walk the deleted slots */
  private readonly segmentCache = new LruMap<string, readonly number[]>();
  /** long texts' chunks (chunkEnd) → their ids, least recently used first (encodeAsync, countAsync) */
  private readonly chunks = new LruMap<string, readonly number[]>();
  private chunkChars = 0;
  /** no added token holds whitespace, so cutting at safeCut points never splits one */
  readonly sliceable: boolean;
  /** a long encode's first slice, from the pace of the last slice encoded (see SYNC_ENCODE_CHARS) */
  private firstSlice: number;
  private readonly syncChars: number;
  /** a stretch without a cut point longer than this goes to the worker thread (OFFLOAD_CHARS, or
   * four times a slower encoder's syncEncodeChars) */
  private readonly offloadChars: number;
  private readonly prefix: readonly number[];
  private readonly suffix: readonly number[];

  constructor(parts: FamilyParts) {
    this.parts = parts;
    this.family = parts.family;
    this.vocabSize = parts.vocabSize;
    this.eosTokenId = parts.eosTokenId;
    this.bosTokenId = parts.bosTokenId;
    this.hasChatTemplate = parts.hasChatTemplate;
    this.addedTokens = new Map(parts.addedTokens.map((t) => [t.content, t.id]));
    const contents = parts.encoderSplitsAdded
      ? []
      : parts.addedTokens.map((t) => t.content).sort((a, b) => b.length - a.length);
    this.addedRegex = contents.length ? new RegExp(contents.map(escapeRegex).join("|"), "g") : null;
    this.addedFirstChars = [...new Set(contents.map((c) => c[0]!))].join("");
    this.sliceable =
      parts.sliceable !== false &&
      !parts.encoderSplitsAdded &&
      parts.addedTokens.every((t) => !/\s/.test(t.content));
    this.syncChars = parts.syncEncodeChars ?? SYNC_ENCODE_CHARS;
    this.firstSlice = this.syncChars;
    this.offloadChars = Math.min(OFFLOAD_CHARS, 4 * this.syncChars);
    this.prefix = parts.prefixIds ?? (parts.bosTokenId !== null ? [parts.bosTokenId] : []);
    this.suffix = parts.suffixIds ?? [];
    this.outputPool = buildOutputPool(
      (text) => this.encode(text, false),
      (id) => this.decode([id]),
      parts.poolCandidates,
    );
  }

  /** derives a tokenizer for a model whose vocabulary (padding) size differs from the family default */
  withVocabSize(vocabSize: number): FamilyTokenizer {
    if (vocabSize === this.vocabSize) return this;
    return new FamilyTokenizer({ ...this.parts, vocabSize });
  }

  encode(text: string, addSpecialTokens = true): number[] {
    const out: number[] = [];
    if (addSpecialTokens) appendAll(out, this.prefix);
    this.encodeInto(text, out);
    if (addSpecialTokens) appendAll(out, this.suffix);
    return out;
  }

  /**
   * encode, in slices between turns of the event loop for long text (see SYNC_ENCODE_CHARS). Slices
   * end at cut points (safeCut); a stretch longer than OFFLOAD_CHARS without one is encoded on the
   * worker thread (offload.ts), so no slice costs more than a few milliseconds whatever the text.
   */
  async encodeAsync(text: string, addSpecialTokens = true): Promise<number[]> {
    if (text.length <= this.syncChars) return this.encode(text, addSpecialTokens);
    if (!this.sliceable) return (await this.whole(text, addSpecialTokens, Infinity)).ids;
    return (await this.sliced(text, addSpecialTokens, Infinity)).ids;
  }

  /** encodeAsync's count, keeping only the first `keep` ids (a router needs no more than max_model_len) */
  async countAsync(
    text: string,
    addSpecialTokens: boolean,
    keep: number,
    since?: number,
    owner?: Cancellable,
  ): Promise<{ count: number; ids: number[] }> {
    if (text.length <= this.syncChars) {
      const ids = this.encode(text, addSpecialTokens);
      const count = ids.length;
      if (count > keep) ids.length = keep;
      return { count, ids };
    }
    if (!this.sliceable) return this.whole(text, addSpecialTokens, keep, owner);
    if (text.length > COUNT_ON_WORKER_CHARS) {
      if (tokenizerThread.ready(this.family))
        return tokenizerThread.count(this.family, text, addSpecialTokens, keep, owner);
      // this one in slices here; the next ones on the worker, once it has loaded the tables
      tokenizerThread.warm(this.family);
    }
    return this.sliced(text, addSpecialTokens, keep, since, owner);
  }

  /**
   * Long text that cannot be cut safely, encoded whole on the worker thread (which loads the
   * tokenizer by family name): encoding it here at once would hold the event loop for as long as the
   * text is long. Only folder tokenizers (hf-tokenizer.ts) that are not byte-level come here; the
   * built-in families are always sliceable.
   */
  private whole(
    text: string,
    addSpecialTokens: boolean,
    keep: number,
    owner?: Cancellable,
  ): Promise<{ count: number; ids: number[] }> {
    return tokenizerThread.count(this.family, text, addSpecialTokens, keep, owner);
  }

  private async sliced(
    text: string,
    addSpecialTokens: boolean,
    keep: number,
    /** when the caller's work began, if earlier than now (eventloop/turns.ts) */
    began?: number,
    /** what the work is for: once cancelled, its next turn rejects with WorkCancelled (eventloop/turns.ts) */
    owner?: Cancellable,
  ): Promise<{ count: number; ids: number[] }> {
    const n = text.length;
    const out: number[] = [];
    let dropped = 0;
    if (addSpecialTokens) appendAll(out, this.prefix);
    // work that began earlier and waits for its turn goes first (eventloop/turns.ts)
    const since = began ?? performance.now();
    if (waitingSlices() > 0) await nextTurn(since, owner);
    else if (owner?.cancelled) throw new WorkCancelled();
    let slice = this.firstSlice;
    // pos and end stay on the text's chunk grid (chunkEnd), so that a slice is whole chunks
    for (let pos = 0; pos < n;) {
      let end = chunkEnd(text, pos);
      if (end - pos > this.offloadChars) {
        const ids = await tokenizerThread.encode(this.family, text.slice(pos, end), owner);
        for (let i = 0; i < ids.length; i++) out.push(ids[i]!);
        dropped += keepFirst(out, keep);
        pos = end;
        continue;
      }
      // grow the slice chunk by chunk, stopping before a stretch that must be offloaded
      while (end < n && end - pos < slice) {
        const next = chunkEnd(text, end);
        if (next - end > this.offloadChars) break;
        end = next;
      }
      const t0 = performance.now();
      for (let c = pos; c < end;) {
        const e = chunkEnd(text, c);
        this.encodeChunk(c === 0 && e === n ? text : text.slice(c, e), out);
        c = e;
      }
      dropped += keepFirst(out, keep);
      const ms = performance.now() - t0;
      // aim the next slice at SLICE_TARGET_MS from this one's pace (cache hits make it vary)
      const pace = (end - pos) / Math.max(ms, 0.05);
      slice = Math.min(SLICE_MAX_CHARS, Math.max(SLICE_MIN_CHARS, Math.floor(pace * SLICE_TARGET_MS)));
      this.firstSlice = Math.min(this.syncChars, slice);
      pos = end;
      if (pos < n) await nextTurn(pos < OLDEST_FIRST_CHARS ? since : performance.now(), owner);
    }
    if (addSpecialTokens) {
      appendAll(out, this.suffix);
      dropped += keepFirst(out, keep);
    }
    return { count: out.length + dropped, ids: out };
  }

  /**
   * countAsync's answer computed at once, in chunks of about `chunk` characters ending at cut points
   * (safeCut), asking `stopped` before each: undefined once it says yes. For the worker thread
   * (offload-worker.ts), where a count runs for seconds and its client may leave meanwhile.
   */
  countUnlessStopped(
    text: string,
    addSpecialTokens: boolean,
    keep: number,
    stopped: () => boolean,
    chunk = WORKER_CHUNK_CHARS,
  ): { count: number; ids: number[] } | undefined {
    const out: number[] = [];
    let dropped = 0;
    if (addSpecialTokens) appendAll(out, this.prefix);
    for (let pos = 0; pos < text.length;) {
      if (stopped()) return undefined;
      const end = this.sliceable ? safeCut(text, pos + chunk) : text.length;
      this.encodeInto(text.slice(pos, end), out);
      dropped += keepFirst(out, keep);
      pos = end;
    }
    if (addSpecialTokens) {
      appendAll(out, this.suffix);
      dropped += keepFirst(out, keep);
    }
    return { count: out.length + dropped, ids: out };
  }

  /**
   * appends the ids of one chunk of a long text (chunkEnd), remembered: long prompts that share a
   * prefix (a system prompt, a document, a conversation's history) share its whole chunks, so a
   * prompt is encoded only from the chunk where it parts from the earlier ones
   */
  private encodeChunk(chunk: string, out: number[]): void {
    let ids = this.chunks.use(chunk);
    if (ids === undefined) {
      const fresh: number[] = [];
      this.encodeInto(chunk, fresh);
      ids = fresh;
      if (chunk.length <= CHUNK_CACHE_CHARS / 4) {
        this.chunks.set(detached(chunk), ids);
        this.chunkChars += chunk.length;
        while (this.chunkChars > CHUNK_CACHE_CHARS || this.chunks.size > CHUNK_CACHE_ENTRIES) {
          const old = this.chunks.shift();
          if (old === undefined) break;
          this.chunkChars -= old.key.length;
        }
      }
    }
    for (let i = 0; i < ids.length; i++) out.push(ids[i]!);
  }

  /** appends the ids of `text` (added tokens recognised, no BOS) */
  private encodeInto(text: string, out: number[]): void {
    if (!this.mayContainAdded(text)) {
      this.encodeSegment(text, out);
      return;
    }
    const re = this.addedRegex!;
    re.lastIndex = 0;
    let prev = 0;
    for (let m = re.exec(text); m !== null; m = re.exec(text)) {
      if (m.index > prev) this.encodeSegment(text.slice(prev, m.index), out);
      out.push(this.addedTokens.get(m[0])!);
      prev = m.index + m[0].length;
    }
    if (prev < text.length) this.encodeSegment(text.slice(prev), out);
  }

  /** appends the ids of text that holds no added token */
  private encodeSegment(text: string, out: number[]): void {
    if (text.length > SEGMENT_CACHE_MAX_CHARS) {
      appendAll(out, this.parts.encodeOrdinary(text));
      return;
    }
    let ids = this.segmentCache.use(text);
    if (ids === undefined) {
      ids = this.parts.encodeOrdinary(text);
      if (this.segmentCache.size >= SEGMENT_CACHE_ENTRIES) this.segmentCache.shift();
      // a copy, not the slice of the caller's text: a slice would keep all of that text alive
      this.segmentCache.add(detached(text), ids);
    }
    appendAll(out, ids);
  }

  decode(ids: readonly number[], skipSpecialTokens = false): string {
    return this.parts.table.decode(clampIds(ids, this.vocabSize), skipSpecialTokens);
  }

  tokenStrings(ids: readonly number[]): string[] {
    const out = new Array<string>(ids.length);
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i]!;
      out[i] = id < this.vocabSize ? this.parts.table.tokenString(id) : "";
    }
    return out;
  }

  applyChatTemplate(messages: readonly ChatMessage[], opts: ChatTemplateOptions): string {
    return renderChat(this.parts.template, messages, opts);
  }

  encodeChat(messages: readonly ChatMessage[], opts: ChatTemplateOptions): number[] {
    return this.encode(renderChat(this.parts.template, messages, opts), false);
  }

  encodeChatAsync(messages: readonly ChatMessage[], opts: ChatTemplateOptions): Promise<number[]> {
    return this.encodeAsync(renderChat(this.parts.template, messages, opts), false);
  }

  countChatAsync(
    messages: readonly ChatMessage[],
    opts: ChatTemplateOptions,
    keep: number,
  ): Promise<{ count: number; ids: number[] }> {
    return this.countAsync(renderChat(this.parts.template, messages, opts), false, keep);
  }

  private mayContainAdded(text: string): boolean {
    if (this.addedRegex === null) return false;
    for (const c of this.addedFirstChars) if (text.includes(c)) return true;
    return false;
  }
}

function appendAll(out: number[], ids: readonly number[]): void {
  for (let i = 0; i < ids.length; i++) out.push(ids[i]!);
}

/** ids at or above the model's vocab size decode to nothing even where the table is larger */
function clampIds(ids: readonly number[], vocabSize: number): readonly number[] {
  for (let i = 0; i < ids.length; i++) {
    if (ids[i]! >= vocabSize) return ids.filter((id) => id < vocabSize);
  }
  return ids;
}
