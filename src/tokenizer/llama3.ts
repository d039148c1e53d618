// Llama 3 / 3.1: the real tokenizer (llama3-tokenizer-js carries Meta's 128,000-token BPE vocabulary
// and merges) plus the 256 special tokens 128000..128255, and the Llama 3.1 chat template.
import { createRequire } from "node:module";
import { LruMap } from "../collections/lru-map.js";
import { byteLevelToBytes, VocabTable, type AddedToken } from "./byte-level.js";
import { llama31Template } from "./chat-templates.js";
import { detached } from "../collections/detached.js";
import { FamilyTokenizer } from "./family-tokenizer.js";

interface Llama3Lib {
  vocabById: string[];
  encode(text: string, options: { bos: boolean; eos: boolean }): number[];
}

export const LLAMA3_VOCAB_SIZE = 128256;

/**
 * Llama 3's pre-tokenizer (tokenizer.json's Split pattern; the `(?i:'s|...)` group spelled out, as
 * JavaScript has no inline flags). BPE never merges across these pieces, so each piece's ids can be
 * computed alone and remembered.
 */
const PRETOKEN =
  /'(?:[sS]|[tT]|[rR][eE]|[vV][eE]|[mM]|[lL][lL]|[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+/uy;
/** pieces remembered (least recently used dropped first); words repeat, so most of a text's pieces hit */
const PIECE_CACHE_ENTRIES = 32_768;
/** longer pieces are rare and not worth a slot */
const PIECE_CACHE_MAX_CHARS = 64;

/**
 * Encodes ordinary text (no special tokens) piece by piece with a bounded cache of each piece's ids.
 * The library re-splits and re-encodes UTF-8 for every call and caches nothing across calls: 1.1–1.6
 * million characters a second on this project's dev box; with the piece cache 15–16 million on
 * English-like text (npm run bench -- micro/tokenizer), the same ids (test/tokenizer/tokenizer.test.ts).
 */
function pieceCachingEncoder(lib: Llama3Lib): (text: string) => number[] {
  // an LruMap, not a Map dropping keys().next(): that walks every slot deleted since the table was
  // last rebuilt, 11 µs a dropped piece at this size; 200 new words with the cache full took 5.7 ms
  // to encode, 2.7 without it (bench/micro/tokenizer.ts)
  const cache = new LruMap<string, readonly number[]>();
  const opts = { bos: false, eos: false };
  const push = (piece: string, out: number[]) => {
    let ids = cache.use(piece);
    if (ids === undefined) {
      ids = lib.encode(piece, opts);
      if (piece.length <= PIECE_CACHE_MAX_CHARS) {
        if (cache.size >= PIECE_CACHE_ENTRIES) cache.shift();
        // a copy, not the slice: a slice would keep the whole text it was cut from alive
        cache.add(detached(piece), ids);
      }
    }
    for (let i = 0; i < ids.length; i++) out.push(ids[i]!);
  };
  return (text) => {
    const out: number[] = [];
    // sticky and tested, not exec'd: no match array per piece (a megabyte prompt has ~200 000)
    const re = PRETOKEN;
    const n = text.length;
    for (let pos = 0; pos < n;) {
      re.lastIndex = pos;
      // every character belongs to some alternative; a lone one that does not goes alone
      const end = re.test(text) && re.lastIndex > pos ? re.lastIndex : pos + 1;
      push(text.slice(pos, end), out);
      pos = end;
    }
    return out;
  };
}

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
    encodeOrdinary: pieceCachingEncoder(lib),
    table,
    template: llama31Template,
  });
}
