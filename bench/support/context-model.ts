// A toy "model" for the chaos run's stand-in engines, cheap enough for thousands of streams: one
// token per UTF-16 code unit (so a text and its token ids are the same thing, and a chat's partial
// answer sent back with continue_final_message re-tokenises exactly), and each next token a function
// of every token before it, as a greedy model's is. A stream that migrates mid-answer must therefore
// end with exactly the text an unbroken one has; the chaos run checks every stream against
// `expectedAnswer`.

import { fmix, fold } from "../../src/random/rng.js";

const idsOf = (text: string): number[] => Array.from({ length: text.length }, (_, i) => text.charCodeAt(i));

/** A chat conversation as the toy template renders it; the last message left open to continue it. */
export function renderChat(messages: unknown, continueFinal: boolean): string {
  let out = "";
  const list = Array.isArray(messages) ? (messages as { role?: unknown; content?: unknown }[]) : [];
  list.forEach((m, i) => {
    const content = typeof m.content === "string" ? m.content : "";
    out += `${String(m.role)}:${content}`;
    if (!(continueFinal && i === list.length - 1)) out += "\n";
  });
  return continueFinal ? out : out + "assistant:";
}

/** The prompt's token ids: a text's code units, or the ids given. */
export function promptIds(body: Record<string, unknown>, chat: boolean): number[] {
  if (chat) return idsOf(renderChat(body.messages, body.continue_final_message === true));
  const p = body.prompt;
  const one = Array.isArray(p) && p.length === 1 && !(typeof p[0] === "number") ? p[0] : p;
  if (typeof one === "string") return idsOf(one);
  if (Array.isArray(one)) return one.filter((x): x is number => typeof x === "number");
  return [];
}

/** `n` output token ids after `prompt` (letters, now and then a space). */
export function nextTokens(prompt: readonly number[], n: number): number[] {
  let h = 0x811c9dc5;
  for (const id of prompt) h = fold(h, id);
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const r = fmix(h);
    const id = r % 6 === 0 ? 32 : 97 + (r % 26);
    out.push(id);
    h = fold(h, id);
  }
  return out;
}

/** The text of token ids (one code unit each). */
export const textOf = (ids: readonly number[]): string => String.fromCharCode(...ids);

/** What an unbroken answer to `body` reads, `n` tokens long. */
export function expectedAnswer(body: Record<string, unknown>, chat: boolean, n: number): string {
  return textOf(nextTokens(promptIds(body, chat), n));
}
