// Llama 3 / 3.1: the real tokenizer (llama3-tokenizer-js carries Meta's 128,000-token BPE vocabulary
// and merges) plus the 256 special tokens 128000..128255, and the Llama 3.1 chat template.
import { createRequire } from "node:module";
import { byteLevelToBytes, VocabTable, type AddedToken } from "./byte-level.js";
import { llama31Template } from "./chat-templates.js";
import { FamilyTokenizer } from "./family-tokenizer.js";

interface Llama3Lib {
  vocabById: string[];
  encode(text: string, options: { bos: boolean; eos: boolean }): number[];
}

export const LLAMA3_VOCAB_SIZE = 128256;
const ORDINARY = 128000;

/** Llama 3.1's special tokens by id (tokenizer_config.json added_tokens_decoder). */
export function llama3SpecialTokens(): AddedToken[] {
  const named = [
    "<|begin_of_text|>",
    "<|end_of_text|>",
    "<|reserved_special_token_0|>",
    "<|reserved_special_token_1|>",
    "<|finetune_right_pad_id|>",
    "<|reserved_special_token_2|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eom_id|>",
    "<|eot_id|>",
    "<|python_tag|>",
  ];
  const out: AddedToken[] = named.map((content, i) => ({ id: ORDINARY + i, content, special: true }));
  for (let r = 3; ORDINARY + out.length < LLAMA3_VOCAB_SIZE; r++) {
    out.push({ id: ORDINARY + out.length, content: `<|reserved_special_token_${r}|>`, special: true });
  }
  return out;
}

export function createLlama3Tokenizer(): FamilyTokenizer {
  // The package is ESM whose import builds the vocabulary (~300 ms); its CommonJS bundle lets this
  // stay synchronous and lazy: nothing is loaded until a Llama model asks for its tokenizer.
  const require = createRequire(import.meta.url);
  const mod = require("llama3-tokenizer-js/bundle/commonjs-llama3-tokenizer-with-baked-data.cjs") as {
    llama3Tokenizer: Llama3Lib;
  };
  const lib = mod.llama3Tokenizer;
  const added = llama3SpecialTokens();
  const table = VocabTable.build(
    LLAMA3_VOCAB_SIZE,
    ORDINARY,
    (id) => byteLevelToBytes(lib.vocabById[id]!),
    added,
  );
  return new FamilyTokenizer({
    family: "llama3",
    vocabSize: LLAMA3_VOCAB_SIZE,
    // Llama 3.1 Instruct's tokenizer_config eos_token is <|eot_id|>; generation also stops at 128001/128008.
    eosTokenId: 128009,
    bosTokenId: 128000,
    hasChatTemplate: true,
    addedTokens: added,
    // Specials are split out before this is called, so the library's own special handling never fires.
    encodeOrdinary: (text) => lib.encode(text, { bos: false, eos: false }),
    table,
    template: llama31Template,
  });
}
