// The tokenizer of a Hugging Face model folder (`switchyard sim DIR`, `--tokenizer DIR`): its own
// tokenizer.json ids through @huggingface/tokenizers, its own chat template through
// @huggingface/jinja, its BOS/EOS and added tokens, behind the same Tokenizer contract (sliced async
// counting, worker thread, decode table, output pool) as the built-in families.
import { existsSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { byteLevelToBytes, VocabTable, type AddedToken } from "./byte-level.js";
import { plainFallbackTemplate, type ChatTemplate } from "./chat-templates.js";
import { FamilyTokenizer } from "./family-tokenizer.js";
import { loadHfFolder, type HfComponent, type HfFolder } from "./hf-folder.js";
import { contentText, type ChatMessage } from "../protocol/chat-messages.js";
import { ChatTemplateError } from "./types.js";

/** the family name of a folder's tokenizer: the worker thread loads it again from this (index.ts) */
export const HF_FAMILY_PREFIX = "hf:";

export function hfFamily(dir: string): string {
  return HF_FAMILY_PREFIX + resolve(dir);
}

const utf8 = new TextEncoder();

/**
 * @huggingface/tokenizers encodes ~0.3-1 M characters a second on ordinary text (16,384 characters,
 * the built-in families' one-piece size, took 17-60 ms on a busy 2-core host): longer text is encoded
 * in slices (or on the worker thread) from this length on, ~1-3 ms each.
 */
const HF_SYNC_ENCODE_CHARS = 1_024;

function components(c: HfComponent | null | undefined): HfComponent[] {
  if (!c) return [];
  return [c, ...(c.pretokenizers ?? []).flatMap(components), ...(c.decoders ?? []).flatMap(components)];
}

/** byte-level: every token string is GPT-2's byte-to-char map of its bytes (Llama 3, Qwen, GPT-2) */
function isByteLevel(json: HfFolder["json"]): boolean {
  return components(json.decoder).some((c) => c.type === "ByteLevel");
}

/**
 * Cutting text before a space between ASCII letters leaves its ids unchanged (family-tokenizer.ts's
 * safeCut) when the pre-tokenizer is byte-level regex splitting (ByteLevel with its regex, or a Split
 * before it, as Llama 3 and Qwen do) and no normaliser other than NFC reads across the cut.
 */
function cutsLikeByteLevel(json: HfFolder["json"]): boolean {
  const pre = components(json.pre_tokenizer);
  const byteLevel = pre.find((c) => c.type === "ByteLevel");
  if (!byteLevel) return false;
  if (byteLevel.use_regex === false && !pre.some((c) => c.type === "Split")) return false;
  const norm = json.normalizer;
  return !norm || norm.type === "NFC";
}

/** SentencePiece-style token strings: "▁" is a space, "<0x0A>" one byte */
function pieceBytes(token: string): Uint8Array {
  const m = /^<0x([0-9A-Fa-f]{2})>$/.exec(token);
  if (m) return Uint8Array.of(parseInt(m[1]!, 16));
  return utf8.encode(token.replace(/\u2581/g, " "));
}

function vocabEntries(json: HfFolder["json"]): Array<[string, number]> {
  const v = json.model?.vocab;
  if (!v) return [];
  // Unigram models list [piece, score] pairs, the id being the position
  if (Array.isArray(v)) return v.map(([piece], i) => [piece, i]);
  return Object.entries(v);
}

function readJsonIfAny(path: string): Record<string, unknown> {
  if (!existsSync(path)) return {};
  try {
    return JSON.parse(readFileSync(path, "utf8")) as Record<string, unknown>;
  } catch {
    return {};
  }
}

function firstId(v: unknown): number | null {
  if (typeof v === "number" && Number.isInteger(v)) return v;
  if (Array.isArray(v) && typeof v[0] === "number") return v[0];
  return null;
}

/**
 * What `encode(text, add_special_tokens=True)` puts around the text: the post-processor's ids before
 * and after a probe, then add_bos_token / add_eos_token when tokenizer_config.json sets them, as
 * transformers' Llama-style fast tokenizers rebuild their post-processor from those two flags.
 */
function specialsAround(
  folder: HfFolder,
  bos: number | null,
  eos: number | null,
): { prefix: number[]; suffix: number[] } {
  const probe = "a";
  const plain: number[] = folder.hf.encode(probe, { add_special_tokens: false }).ids;
  const full: number[] = folder.hf.encode(probe, { add_special_tokens: true }).ids;
  let at = -1;
  for (let i = 0; i + plain.length <= full.length && at < 0; i++) {
    if (plain.every((id, j) => full[i + j] === id)) at = i;
  }
  let prefix = at >= 0 ? full.slice(0, at) : [];
  let suffix = at >= 0 ? full.slice(at + plain.length) : [];
  const addBos = folder.config.add_bos_token;
  const addEos = folder.config.add_eos_token;
  if (typeof addBos === "boolean" && bos !== null) {
    prefix = prefix.filter((id) => id !== bos);
    if (addBos) prefix.unshift(bos);
  }
  if (typeof addEos === "boolean" && eos !== null) {
    suffix = suffix.filter((id) => id !== eos);
    if (addEos) suffix.push(eos);
  }
  return { prefix, suffix };
}

/**
 * The folder's Jinja template as a ChatTemplate: message content flattened as vLLM does for templates
 * that take text ("string" content format), the folder's special tokens and vLLM's kwargs as
 * variables; any error the template raises (raise_exception, a bad index) is the caller's 400.
 */
function jinjaTemplate(folder: HfFolder): ChatTemplate {
  return (messages, opts) => {
    const flat = messages.map((m) => ({ ...m, content: contentText(m.content) }));
    const kwargs: Record<string, unknown> = {};
    if (opts.enableThinking !== undefined) kwargs.enable_thinking = opts.enableThinking;
    try {
      return folder.render(flat, opts.addGenerationPrompt, kwargs);
    } catch (err) {
      throw new ChatTemplateError((err as Error).message);
    }
  };
}

/** one item for folderTokenIds: a prompt, or a conversation rendered with the folder's template */
export type FolderTokenItem =
  { text: string; addSpecialTokens?: boolean } | { messages: ChatMessage[]; addGenerationPrompt?: boolean };

/**
 * The ids `switchyard sim DIR` gives for each item, as its /tokenize answers them (prompts with
 * special tokens unless told otherwise; conversations rendered with the generation prompt and
 * encoded without special tokens, as vLLM does): for parity checks against a real vLLM serving the
 * same folder.
 */
export function folderTokenIds(dir: string, items: readonly FolderTokenItem[]): number[][] {
  const tk = createHfTokenizer(dir);
  return items.map((item) =>
    "messages" in item
      ? tk.encodeChat(item.messages, { addGenerationPrompt: item.addGenerationPrompt ?? true })
      : tk.encode(item.text, item.addSpecialTokens ?? true),
  );
}

/**
 * The tokenizer of the folder `dir`. vocabSize is the model's (config.json's vocab_size, which may
 * exceed the tokenizer's own table); by default the tokenizer's size.
 */
export function createHfTokenizer(dir: string, vocabSize?: number): FamilyTokenizer {
  const folder = loadHfFolder(dir);
  const json = folder.json;
  const byteLevel = isByteLevel(json);
  const entries = vocabEntries(json);
  const rawAdded = json.added_tokens ?? [];
  let tableSize = 0;
  for (const [, id] of entries) tableSize = Math.max(tableSize, id + 1);
  for (const t of rawAdded) tableSize = Math.max(tableSize, t.id + 1);
  const size = Math.max(tableSize, vocabSize ?? 0);
  const strings = new Array<string | undefined>(tableSize);
  for (const [s, id] of entries) strings[id] = s;
  const added: AddedToken[] = rawAdded.map((t) => ({ id: t.id, content: t.content, special: t.special }));
  const table = VocabTable.build(
    size,
    tableSize,
    (id) => {
      const s = strings[id];
      if (s === undefined) return null;
      return byteLevel ? (byteLevelToBytes(s) ?? utf8.encode(s)) : pieceBytes(s);
    },
    added,
  );
  const idOf = (name: string): number | null => {
    const text = folder.specials[name];
    if (text === undefined) return null;
    return folder.hf.token_to_id(text) ?? null;
  };
  const modelConfig = readJsonIfAny(join(dir, "config.json"));
  const bos = idOf("bos_token") ?? firstId(modelConfig.bos_token_id);
  const eos =
    idOf("eos_token") ??
    firstId(readJsonIfAny(join(dir, "generation_config.json")).eos_token_id) ??
    firstId(modelConfig.eos_token_id) ??
    added.find((t) => t.special)?.id ??
    0;
  const { prefix, suffix } = specialsAround(folder, bos, eos);
  // Added tokens that strip neighbouring spaces, match whole words only or match after
  // normalisation are left to the library, which sees them in place.
  const plainAdded = rawAdded.every(
    (t) => !t.lstrip && !t.rstrip && !t.single_word && !(t.normalized && json.normalizer),
  );
  const hf = folder.hf;
  return new FamilyTokenizer({
    family: hfFamily(dir),
    vocabSize: vocabSize ?? tableSize,
    eosTokenId: eos,
    bosTokenId: bos,
    hasChatTemplate: folder.templateText !== null,
    addedTokens: added,
    encodeOrdinary: (text) => hf.encode(text, { add_special_tokens: false }).ids,
    table,
    template: folder.templateText !== null ? jinjaTemplate(folder) : plainFallbackTemplate,
    prefixIds: prefix,
    suffixIds: suffix,
    sliceable: byteLevel && cutsLikeByteLevel(json),
    encoderSplitsAdded: !plainAdded,
    syncEncodeChars: HF_SYNC_ENCODE_CHARS,
    poolCandidates: function* () {
      for (let id = 0; id < tableSize; id++) if (strings[id] !== undefined) yield id;
    },
  });
}
