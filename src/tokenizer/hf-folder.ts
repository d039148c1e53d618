// A Hugging Face model folder's tokenizer files, read once: tokenizer.json through
// @huggingface/tokenizers, the chat template (tokenizer_config.json's `chat_template`, or the
// chat_template.jinja file newer folders ship) through @huggingface/jinja, and the special-token
// strings templates refer to. Shared by the sim's folder tokenizer (hf-tokenizer.ts) and the router's
// `--tokenizer-dir`, so both read a folder the same way a real vLLM (transformers) does.
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { Tokenizer as HfTokenizer } from "@huggingface/tokenizers";
import { Template } from "@huggingface/jinja";
import { InputFileError, UnsupportedError } from "../errors/index.js";

/** one entry of tokenizer.json's `added_tokens` */
export interface HfAddedToken {
  id: number;
  content: string;
  special: boolean;
  lstrip?: boolean;
  rstrip?: boolean;
  single_word?: boolean;
  normalized?: boolean;
}

/** the parts of tokenizer.json read outside @huggingface/tokenizers */
export interface HfTokenizerJson {
  added_tokens?: HfAddedToken[];
  normalizer?: { type?: string } | null;
  pre_tokenizer?: HfComponent | null;
  decoder?: HfComponent | null;
  model?: { type?: string; vocab?: Record<string, number> | Array<[string, number]> };
}

export interface HfComponent {
  type?: string;
  use_regex?: boolean;
  pretokenizers?: HfComponent[];
  decoders?: HfComponent[];
}

export interface HfFolder {
  dir: string;
  /** @huggingface/tokenizers' tokenizer for tokenizer.json, with tokenizer_config.json */
  hf: HfTokenizer;
  json: HfTokenizerJson;
  /** tokenizer_config.json ({} when the folder has none) */
  config: Record<string, unknown>;
  /** the chat template's source text, or null when the folder ships none */
  templateText: string | null;
  /**
   * The special-token strings transformers hands every template (bos_token, eos_token, ...); a
   * render's own variables come after them.
   */
  specials: Record<string, string>;
  /** the template rendered with messages, add_generation_prompt and extra variables */
  render(messages: unknown[], addGenerationPrompt: boolean, kwargs?: Record<string, unknown>): string;
}

/** the special-token attributes transformers passes to chat templates (special_tokens_map) */
const SPECIAL_NAMES = [
  "bos_token",
  "eos_token",
  "unk_token",
  "sep_token",
  "pad_token",
  "cls_token",
  "mask_token",
] as const;

function tokenText(v: unknown): string | undefined {
  if (typeof v === "string") return v;
  if (v && typeof v === "object" && typeof (v as { content?: unknown }).content === "string")
    return (v as { content: string }).content;
  return undefined;
}

function readJson(path: string): unknown {
  try {
    return JSON.parse(readFileSync(path, "utf8"));
  } catch (err) {
    throw new InputFileError(`cannot read ${path}: ${(err as Error).message}`);
  }
}

/** True when `dir` holds a tokenizer.json (what loadHfFolder needs). */
export function hasTokenizerJson(dir: string): boolean {
  return existsSync(join(dir, "tokenizer.json"));
}

/**
 * The folder's chat template text: chat_template.jinja wins over tokenizer_config.json, as in
 * transformers; a list of named templates gives the one named "default".
 */
function templateSource(dir: string, cfg: Record<string, unknown>): string | null {
  const jinjaPath = join(dir, "chat_template.jinja");
  if (existsSync(jinjaPath)) return readFileSync(jinjaPath, "utf8");
  if (typeof cfg.chat_template === "string") return cfg.chat_template;
  if (Array.isArray(cfg.chat_template)) {
    const named = (cfg.chat_template as { name?: string; template?: string }[]).find(
      (t) => t.name === "default",
    );
    return named?.template ?? null;
  }
  return null;
}

/** Reads a folder's tokenizer files; throws naming the file when one is missing or unreadable. */
export function loadHfFolder(dir: string): HfFolder {
  const tokPath = join(dir, "tokenizer.json");
  if (!existsSync(tokPath))
    throw new InputFileError(
      `${dir} has no tokenizer.json (only fast tokenizers are supported; convert a slow one with transformers)`,
    );
  const json = readJson(tokPath) as HfTokenizerJson;
  const cfgPath = join(dir, "tokenizer_config.json");
  const config = existsSync(cfgPath) ? (readJson(cfgPath) as Record<string, unknown>) : {};
  const hf = new HfTokenizer(json, config);
  const templateText = templateSource(dir, config);
  const template = templateText ? new Template(templateText) : null;
  const specials: Record<string, string> = {};
  for (const name of SPECIAL_NAMES) {
    const t = tokenText(config[name]);
    if (t !== undefined) specials[name] = t;
  }
  return {
    dir,
    hf,
    json,
    config,
    templateText,
    specials,
    render(messages, addGenerationPrompt, kwargs = {}) {
      if (!template) throw new UnsupportedError("the tokenizer has no chat template");
      return template.render({
        ...specials,
        ...kwargs,
        messages,
        add_generation_prompt: addGenerationPrompt,
      });
    },
  };
}
