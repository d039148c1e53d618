// Tokenizing a request exactly as the engine will, so the router's block hashes equal the engine's.
// Per model, one explicit source: a served model's own tokenizer.json + chat template from a local
// folder (what a real vLLM engine uses), or Switchyard's sim tokenizer (what `switchyard sim` uses for
// the models it knows). Models with neither are routed by the approximate prefix index.
import { resolveModel } from "../../models/profiles.js";
import { LruMap } from "../../collections/lru-map.js";
import { detached } from "../../collections/detached.js";
import {
  loadHfFolder,
  safeCut,
  tokenizerForModel,
  type HfFolder,
  type Tokenizer,
} from "../../tokenizer/index.js";
import { type ChatMessage } from "../../protocol/chat-messages.js";
import type { RequestView } from "../../routing/index.js";

export interface RequestTokenizer {
  /** shown in logs and metrics: `sim:llama3`, `hf:/models/llama` */
  readonly source: string;
  /** the prompt's token ids as the engine computes them, or null when it cannot be rendered */
  tokens(req: RequestView): number[] | null;
}

function firstPrompt(p: unknown): { text: string } | { ids: number[] } | null {
  if (typeof p === "string") return { text: p };
  if (!Array.isArray(p) || p.length === 0) return null;
  if (typeof p[0] === "string") return { text: p[0] as string };
  if (typeof p[0] === "number") return { ids: p as number[] };
  if (Array.isArray(p[0])) return { ids: p[0] as number[] };
  return null;
}

/** segments up to this length are cached by the sim tokenizer itself */
const LONG_SEGMENT_CHARS = 256;
/** characters of long segments' chunks remembered (LRU): ≈ 2M chars + their ids ≈ 8 MB */
const LONG_SEGMENT_CACHE_CHARS = 2_000_000;
/** chunks remembered at most, whatever their length (a chunk is at least CHUNK_CHARS but a piece's last) */
const MAX_CHUNKS = 16_384;
/**
 * a long piece is cut into chunks of at least this many characters, each ending at a cut point
 * (safeCut): two prompts that share a prefix share its whole chunks, so only the chunk the prompts part
 * in and the rest are encoded again (512 characters: about 100 tokens, ~20 µs of text never seen)
 */
const CHUNK_CHARS = 512;

function escapeRegex(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

/**
 * Switchyard's tokenizer for a model the sim serves: exactly what the sim engine computes.
 *
 * The tokenizer splits text at added (special) tokens and BPE-encodes the pieces between them
 * independently, so a piece's ids never depend on its neighbours. Chat templates put special tokens
 * around every message, so a multi-round conversation repeats the same long pieces (a system prompt, a
 * user's history) request after request; BPE of a 9k-token piece costs 15–60 ms of the router's event
 * loop on a loaded 2-core host, more than a cache hit saves at the engine. And prompts that are one
 * piece (a completion's text) share long prefixes without ever repeating whole: at 500 req/s of
 * 4k-token prompts, encoding each whole was the largest part of the router's CPU a request. So a long
 * piece is encoded in chunks cut where the tokenizer's pre-tokenizer cuts anyway (safeCut: BPE never
 * merges across such a cut, so the ids of the chunks, joined, are the ids of the piece), and each
 * chunk's ids are remembered (LRU by characters): a prompt that starts like an earlier one encodes
 * only from the chunk where they part. The result is the same ids the tokenizer gives for the whole
 * text. Tokenizers that cannot be cut so (not `sliceable`) encode long pieces whole, uncached.
 */
export class SimRequestTokenizer implements RequestTokenizer {
  readonly source: string;
  private readonly added: RegExp | null;
  /** chunk text → its ids, least recently used first */
  private readonly chunks = new LruMap<string, readonly number[]>();
  private longChars = 0;
  private readonly sliceable: boolean;

  constructor(private readonly tk: Tokenizer) {
    this.source = `sim:${tk.family}`;
    const contents = [...tk.addedTokens.keys()].sort((a, b) => b.length - a.length);
    this.added = contents.length ? new RegExp(contents.map(escapeRegex).join("|"), "g") : null;
    this.sliceable = tk.sliceable === true;
  }

  tokens(req: RequestView): number[] | null {
    const body = req.body ?? {};
    try {
      if (Array.isArray(req.messages)) {
        if (!this.tk.hasChatTemplate) return null;
        const text = this.tk.applyChatTemplate(req.messages as ChatMessage[], {
          addGenerationPrompt: (body.add_generation_prompt as boolean | undefined) ?? true,
        });
        // as encodeChat: the template's text with added tokens recognised and no extra BOS, unless the
        // request (or its endpoint, Responses) asks the engine to add special tokens
        return this.encode(text, (body.add_special_tokens as boolean | undefined) ?? false);
      }
      const p = firstPrompt(req.prompt);
      if (!p) return null;
      if ("ids" in p) return p.ids;
      return this.encode(p.text, (body.add_special_tokens as boolean | undefined) ?? true);
    } catch {
      return null;
    }
  }

  /** the tokenizer's encode, with long pieces between added tokens remembered */
  encode(text: string, addSpecialTokens: boolean): number[] {
    const out: number[] = [];
    if (addSpecialTokens && this.tk.bosTokenId !== null) out.push(this.tk.bosTokenId);
    const re = this.added;
    if (re === null) {
      this.piece(text, out);
      return out;
    }
    re.lastIndex = 0;
    let prev = 0;
    for (let m = re.exec(text); m !== null; m = re.exec(text)) {
      if (m.index > prev) this.piece(text.slice(prev, m.index), out);
      out.push(this.tk.addedTokens.get(m[0])!);
      prev = m.index + m[0].length;
    }
    if (prev < text.length) this.piece(text.slice(prev), out);
    return out;
  }

  private piece(text: string, out: number[]): void {
    const n = text.length;
    if (n <= LONG_SEGMENT_CHARS || !this.sliceable) {
      const ids = this.tk.encode(text, false);
      for (let i = 0; i < ids.length; i++) out.push(ids[i]!);
      return;
    }
    for (let pos = 0; pos < n;) {
      const end = safeCut(text, pos + CHUNK_CHARS);
      const chunk = pos === 0 && end === n ? text : text.slice(pos, end);
      let ids = this.chunks.use(chunk);
      if (ids === undefined) {
        ids = this.tk.encode(chunk, false);
        // a stretch with no cut point as long as the cache is not worth keeping
        if (chunk.length <= LONG_SEGMENT_CACHE_CHARS / 4) this.remember(chunk, ids);
      }
      for (let i = 0; i < ids.length; i++) out.push(ids[i]!);
      pos = end;
    }
  }

  private remember(chunk: string, ids: readonly number[]): void {
    // a copy: a slice would keep the whole prompt it was cut from alive
    this.chunks.set(detached(chunk), ids);
    this.longChars += chunk.length;
    while (this.longChars > LONG_SEGMENT_CACHE_CHARS || this.chunks.size > MAX_CHUNKS) {
      const old = this.chunks.shift();
      if (old === undefined) break;
      this.longChars -= old.key.length;
    }
  }

  /** characters of long pieces remembered (bounded by LONG_SEGMENT_CACHE_CHARS) */
  get cachedChars(): number {
    return this.longChars;
  }
}

/**
 * A served model's own tokenizer.json and chat template (tokenizer_config.json or chat_template.jinja),
 * read by src/tokenizer's loadHfFolder, as `switchyard sim DIR` reads them.
 */
export class HfRequestTokenizer implements RequestTokenizer {
  readonly source: string;
  private readonly folder: HfFolder;

  constructor(dir: string) {
    this.source = `hf:${dir}`;
    this.folder = loadHfFolder(dir);
  }

  render(messages: unknown[], addGenerationPrompt: boolean, kwargs: Record<string, unknown> = {}): string {
    return this.folder.render(messages, addGenerationPrompt, kwargs);
  }

  tokens(req: RequestView): number[] | null {
    const body = req.body ?? {};
    try {
      if (Array.isArray(req.messages)) {
        if (this.folder.templateText === null) return null;
        const kwargs = (body.chat_template_kwargs as Record<string, unknown> | undefined) ?? {};
        const text = this.render(
          req.messages,
          (body.add_generation_prompt as boolean | undefined) ?? true,
          kwargs,
        );
        // vLLM tokenizes the rendered template with add_special_tokens=False (the template has the BOS)
        // unless the request, or its endpoint (Responses), says otherwise
        const add = (body.add_special_tokens as boolean | undefined) ?? false;
        return this.folder.hf.encode(text, { add_special_tokens: add }).ids;
      }
      const p = firstPrompt(req.prompt);
      if (!p) return null;
      if ("ids" in p) return p.ids;
      const add = (body.add_special_tokens as boolean | undefined) ?? true;
      return this.folder.hf.encode(p.text, { add_special_tokens: add }).ids;
    } catch {
      return null;
    }
  }
}

/**
 * The tokenizer for a served model: an explicit folder wins (`dirs[model]`, also tried for the card's
 * root), then the sim's tokenizer when the sim knows the model, else none.
 */
export function requestTokenizerFor(
  model: string,
  root: string | undefined,
  dirs: Record<string, string>,
): RequestTokenizer | null {
  const dir = dirs[model] ?? (root ? dirs[root] : undefined);
  if (dir) return new HfRequestTokenizer(dir);
  for (const id of [model, root]) {
    if (!id) continue;
    try {
      const profile = resolveModel(id);
      return new SimRequestTokenizer(tokenizerForModel(profile));
    } catch {
      // not a model the sim knows
    }
  }
  return null;
}
