// Families whose real BPE is not on npm: a real byte-level BPE from gpt-tokenizer stands in for the
// text, while the model's own special tokens keep their real ids. docs/tokenizers.md says what differs.
import { createRequire } from "node:module";
import { VocabTable, type AddedToken } from "./byte-level.js";
import { plainFallbackTemplate, qwen25Template, qwen3Template, type ChatTemplate } from "./chat-templates.js";
import { FamilyTokenizer } from "./family-tokenizer.js";

interface GptEncodingModule {
  encode(text: string, options: { disallowedSpecial: Set<string> }): number[];
}
type RawRanks = readonly (string | readonly number[])[];

const require = createRequire(import.meta.url);
const utf8 = new TextEncoder();

/** CommonJS builds keep loading synchronous and lazy (cl100k's tables cost ~80 ms). */
function loadEncoding(name: "cl100k_base" | "r50k_base"): { encoding: GptEncodingModule; ranks: RawRanks } {
  const encoding = require(`gpt-tokenizer/cjs/encoding/${name}`) as GptEncodingModule;
  const ranksModule = require(`gpt-tokenizer/cjs/bpeRanks/${name}`) as { default?: RawRanks } | RawRanks;
  const ranks = (
    Array.isArray(ranksModule) ? ranksModule : (ranksModule as { default: RawRanks }).default
  ) as RawRanks;
  return { encoding, ranks };
}

function rankBytes(ranks: RawRanks, rank: number): Uint8Array | null {
  const r = ranks[rank];
  if (r === undefined) return null;
  return typeof r === "string" ? utf8.encode(r) : Uint8Array.from(r);
}

/** gpt-tokenizer's own specials (<|endoftext|> ...) are plain text for these models */
const NO_SPECIALS = { disallowedSpecial: new Set<string>() };

export const QWEN_VOCAB_SIZE = 151936;

/** Qwen2.5's added tokens (tokenizer_config.json added_tokens_decoder); special=false ones survive skip_special_tokens */
const QWEN25_ADDED: readonly AddedToken[] = [
  { id: 151643, content: "<|endoftext|>", special: true },
  { id: 151644, content: "<|im_start|>", special: true },
  { id: 151645, content: "<|im_end|>", special: true },
  { id: 151646, content: "<|object_ref_start|>", special: true },
  { id: 151647, content: "<|object_ref_end|>", special: true },
  { id: 151648, content: "<|box_start|>", special: true },
  { id: 151649, content: "<|box_end|>", special: true },
  { id: 151650, content: "<|quad_start|>", special: true },
  { id: 151651, content: "<|quad_end|>", special: true },
  { id: 151652, content: "<|vision_start|>", special: true },
  { id: 151653, content: "<|vision_end|>", special: true },
  { id: 151654, content: "<|vision_pad|>", special: true },
  { id: 151655, content: "<|image_pad|>", special: true },
  { id: 151656, content: "<|video_pad|>", special: true },
  { id: 151657, content: "<tool_call>", special: false },
  { id: 151658, content: "</tool_call>", special: false },
  { id: 151659, content: "<|fim_prefix|>", special: false },
  { id: 151660, content: "<|fim_middle|>", special: false },
  { id: 151661, content: "<|fim_suffix|>", special: false },
  { id: 151662, content: "<|fim_pad|>", special: false },
  { id: 151663, content: "<|repo_name|>", special: false },
  { id: 151664, content: "<|file_sep|>", special: false },
];

/** Qwen3 adds tool-response and think markers after Qwen2.5's set */
const QWEN3_ADDED: readonly AddedToken[] = [
  ...QWEN25_ADDED,
  { id: 151665, content: "<tool_response>", special: false },
  { id: 151666, content: "</tool_response>", special: false },
  { id: 151667, content: "<think>", special: false },
  { id: 151668, content: "</think>", special: false },
];

export type QwenVariant = "qwen3" | "qwen2.5";

export function createQwenTokenizer(variant: QwenVariant): FamilyTokenizer {
  const { encoding, ranks } = loadEncoding("cl100k_base");
  const added = variant === "qwen3" ? QWEN3_ADDED : QWEN25_ADDED;
  const template: ChatTemplate = variant === "qwen3" ? qwen3Template : qwen25Template;
  // cl100k's ordinary ranks are 0..100255 (< 151643): they never collide with Qwen's special ids.
  const table = VocabTable.build(QWEN_VOCAB_SIZE, ranks.length, (id) => rankBytes(ranks, id), added);
  return new FamilyTokenizer({
    family: variant,
    vocabSize: QWEN_VOCAB_SIZE,
    eosTokenId: 151645, // <|im_end|>, the Instruct/hybrid models' eos_token
    bosTokenId: null, // Qwen adds no BOS
    hasChatTemplate: true,
    addedTokens: added,
    encodeOrdinary: (text) => encoding.encode(text, NO_SPECIALS),
    table,
    template,
  });
}

export const OPT_VOCAB_SIZE = 50272;
/**
 * OPT's vocabulary starts with <s> <pad> </s> <unk> at 0..3 (fairseq order). GPT-2's r50k ranks are
 * shifted up by 4 so id 2 stays OPT's real </s> and never doubles as r50k's "#".
 */
const OPT_SHIFT = 4;
const OPT_ADDED: readonly AddedToken[] = [
  { id: 0, content: "<s>", special: true },
  { id: 1, content: "<pad>", special: true },
  { id: 2, content: "</s>", special: true },
  { id: 3, content: "<unk>", special: true },
];

export function createOptTokenizer(): FamilyTokenizer {
  const { encoding, ranks } = loadEncoding("r50k_base");
  const table = VocabTable.build(
    OPT_VOCAB_SIZE,
    ranks.length + OPT_SHIFT,
    (id) => (id < OPT_SHIFT ? null : rankBytes(ranks, id - OPT_SHIFT)),
    OPT_ADDED,
  );
  return new FamilyTokenizer({
    family: "opt",
    vocabSize: OPT_VOCAB_SIZE,
    eosTokenId: 2,
    bosTokenId: 2, // OPT's tokenizer prepends </s> as BOS
    hasChatTemplate: false,
    addedTokens: OPT_ADDED,
    encodeOrdinary: (text) => {
      const ids = encoding.encode(text, NO_SPECIALS);
      for (let i = 0; i < ids.length; i++) ids[i] = ids[i]! + OPT_SHIFT;
      return ids;
    },
    table,
    template: plainFallbackTemplate,
  });
}
