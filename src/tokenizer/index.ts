// Tokenizers per model family, built lazily on first use and cached for the life of the process.
import { createOptTokenizer, createQwenTokenizer } from "./gpt-stand-ins.js";
import type { FamilyTokenizer } from "./family-tokenizer.js";
import { createHfTokenizer, HF_FAMILY_PREFIX, hfFamily } from "./hf-tokenizer.js";
import { createLlama3Tokenizer } from "./llama3.js";
import type { Tokenizer } from "./types.js";
import { InvalidConfigError } from "../errors/index.js";

export type { ChatTemplateOptions, Tokenizer } from "./types.js";
export { ChatTemplateError } from "./types.js";
export { NO_CHAT_TEMPLATE_MESSAGE } from "./chat-templates.js";
export { tokenCountFloor, tokenCountFloorAsync } from "./lower-bound.js";
export { safeCut } from "./family-tokenizer.js";
export { hasTokenizerJson, loadHfFolder, type HfFolder } from "./hf-folder.js";
export { createHfTokenizer, folderTokenIds, hfFamily, type FolderTokenItem } from "./hf-tokenizer.js";

const FACTORIES: Record<string, () => FamilyTokenizer> = {
  llama3: createLlama3Tokenizer,
  qwen3: () => createQwenTokenizer("qwen3"),
  "qwen2.5": () => createQwenTokenizer("qwen2.5"),
  opt: createOptTokenizer,
};

/** other spellings profiles may use; "qwen" alone means the Qwen3 template */
const ALIASES: Record<string, string> = {
  "llama3.1": "llama3",
  llama: "llama3",
  qwen: "qwen3",
  qwen2: "qwen2.5",
  qwen25: "qwen2.5",
};

export const TOKENIZER_FAMILIES: readonly string[] = Object.keys(FACTORIES);

const cache = new Map<string, FamilyTokenizer>();
/**
 * folder tokenizers kept ("hf:/abs/dir" families, and their vocabulary-size variants): a process
 * serves one or a few; beyond, the one loaded first is dropped (it is read again if asked for)
 */
const MAX_FOLDERS = 8;
const folderKeys: string[] = [];

function loadFolder(key: string, dir: string, vocabSize?: number): FamilyTokenizer {
  let t = cache.get(key);
  if (!t) {
    t = createHfTokenizer(dir, vocabSize);
    cache.set(key, t);
    folderKeys.push(key);
    if (folderKeys.length > MAX_FOLDERS) cache.delete(folderKeys.shift()!);
  }
  return t;
}

function canonicalFamily(family: string): string {
  if (family.startsWith(HF_FAMILY_PREFIX)) return family;
  const f = family.toLowerCase();
  const name = ALIASES[f] ?? f;
  if (!(name in FACTORIES)) {
    throw new InvalidConfigError(
      `unknown tokenizer family "${family}" (known: ${[...TOKENIZER_FAMILIES, ...Object.keys(ALIASES)].join(", ")})`,
    );
  }
  return name;
}

function load(name: string): FamilyTokenizer {
  if (name.startsWith(HF_FAMILY_PREFIX)) return loadFolder(name, name.slice(HF_FAMILY_PREFIX.length));
  let t = cache.get(name);
  if (!t) {
    t = FACTORIES[name]!();
    cache.set(name, t);
  }
  return t;
}

/** The family's tokenizer (cached; the first call per family loads its tables, 0.1-0.5 s). */
export function tokenizerFor(family: string): Tokenizer {
  return familyTokenizerFor(family);
}

/** tokenizerFor with the family tokenizer's own methods (the worker thread's stoppable count) */
export function familyTokenizerFor(family: string): FamilyTokenizer {
  return load(canonicalFamily(family));
}

/**
 * The tokenizer for one model profile. A profile from a model folder names its tokenizer
 * "hf:/abs/dir" (the folder's tokenizer.json and template, hf-tokenizer.ts). "qwen" picks the Qwen2.5 template when the model id names
 * Qwen2/Qwen2.5 and Qwen3's otherwise; vocabSize is the model's own (ids below it are accepted).
 */
export function tokenizerForModel(model: { tokenizer: string; vocabSize: number; id?: string }): Tokenizer {
  if (model.tokenizer.startsWith(HF_FAMILY_PREFIX)) {
    const dir = model.tokenizer.slice(HF_FAMILY_PREFIX.length);
    return loadFolder(`${hfFamily(dir)}@${model.vocabSize}`, dir, model.vocabSize);
  }
  let name = canonicalFamily(model.tokenizer);
  if (model.tokenizer.toLowerCase() === "qwen" && model.id && /qwen2(\.5)?[-_/]/i.test(model.id + "-")) {
    name = "qwen2.5";
  }
  const key = `${name}@${model.vocabSize}`;
  let t = cache.get(key);
  if (!t) {
    t = load(name).withVocabSize(model.vocabSize);
    cache.set(key, t);
  }
  return t;
}
