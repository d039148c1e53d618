// One Tokenizer built from parts: an ordinary-text BPE encoder, the added tokens recognised in text,
// a decode table covering the model's whole vocabulary, and a chat template.
import { VocabTable, type AddedToken } from "./byte-level.js";
import type { ChatTemplate } from "./chat-templates.js";
import { buildOutputPool, type OutputPool } from "./output-pool.js";
import type { ChatMessage, ChatTemplateOptions, Tokenizer } from "./types.js";

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
}

/**
 * Short text segments repeat constantly (template glue such as "\n\nCutting Knowledge Date: ...",
 * role names, common system prompts), so their ids are cached: an LRU bounded in entries and in
 * segment length, since long user text rarely repeats and would only churn the cache.
 */
const SEGMENT_CACHE_ENTRIES = 4096;
const SEGMENT_CACHE_MAX_CHARS = 256;

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
  private readonly segmentCache = new Map<string, readonly number[]>();

  constructor(parts: FamilyParts) {
    this.parts = parts;
    this.family = parts.family;
    this.vocabSize = parts.vocabSize;
    this.eosTokenId = parts.eosTokenId;
    this.bosTokenId = parts.bosTokenId;
    this.hasChatTemplate = parts.hasChatTemplate;
    this.addedTokens = new Map(parts.addedTokens.map((t) => [t.content, t.id]));
    const contents = parts.addedTokens.map((t) => t.content).sort((a, b) => b.length - a.length);
    this.addedRegex = contents.length ? new RegExp(contents.map(escapeRegex).join("|"), "g") : null;
    this.addedFirstChars = [...new Set(contents.map((c) => c[0]!))].join("");
    this.outputPool = buildOutputPool(
      (text) => this.encode(text, false),
      (id) => this.decode([id]),
    );
  }

  /** derives a tokenizer for a model whose vocabulary (padding) size differs from the family default */
  withVocabSize(vocabSize: number): FamilyTokenizer {
    if (vocabSize === this.vocabSize) return this;
    return new FamilyTokenizer({ ...this.parts, vocabSize });
  }

  encode(text: string, addSpecialTokens = true): number[] {
    const out: number[] = [];
    if (addSpecialTokens && this.bosTokenId !== null) out.push(this.bosTokenId);
    if (!this.mayContainAdded(text)) {
      this.encodeSegment(text, out);
      return out;
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
    return out;
  }

  /** appends the ids of text that holds no added token */
  private encodeSegment(text: string, out: number[]): void {
    if (text.length > SEGMENT_CACHE_MAX_CHARS) {
      appendAll(out, this.parts.encodeOrdinary(text));
      return;
    }
    let ids = this.segmentCache.get(text);
    if (ids !== undefined) {
      // Re-insert so the Map's insertion order stays least-recently-used first.
      this.segmentCache.delete(text);
    } else {
      ids = this.parts.encodeOrdinary(text);
      if (this.segmentCache.size >= SEGMENT_CACHE_ENTRIES) {
        this.segmentCache.delete(this.segmentCache.keys().next().value!);
      }
    }
    this.segmentCache.set(text, ids);
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
    return this.parts.template(messages, opts);
  }

  encodeChat(messages: readonly ChatMessage[], opts: ChatTemplateOptions): number[] {
    return this.encode(this.parts.template(messages, opts), false);
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
