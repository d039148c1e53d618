// Token-length calibration against the endpoint's own tokenizer: tokenize a sample of the word
// list through POST /tokenize and measure tokens per word. Servers without /tokenize (OpenAI
// itself, most gateways) get the ~1 token a word of the list, with a warning.
import { request } from "undici";
import { makeRng } from "../random/rng.js";
import { randomText, type TextShape } from "../workload/text.js";

export interface Calibration {
  shape: TextShape;
  /** "tokenize" when measured, "assumed" when the server offered no /tokenize */
  source: "tokenize" | "assumed";
  detail: string;
}

const SAMPLE_WORDS = 2000;

export async function calibrate(
  tokenizeUrl: string,
  model: string,
  headers: Record<string, string>,
  timeoutMs = 10_000,
): Promise<Calibration> {
  const text = randomText(SAMPLE_WORDS, makeRng(1, "calibration"));
  try {
    const res = await request(tokenizeUrl, {
      method: "POST",
      headers: { "content-type": "application/json", ...headers },
      body: JSON.stringify({ model, prompt: text, add_special_tokens: false }),
      headersTimeout: timeoutMs,
      bodyTimeout: timeoutMs,
    });
    const body = (await res.body.json().catch(() => null)) as { count?: number; tokens?: number[] } | null;
    const count = body?.count ?? body?.tokens?.length;
    if (res.statusCode !== 200 || typeof count !== "number" || count <= 0) {
      return {
        shape: { tokensPerWord: 1 },
        source: "assumed",
        detail: `no usable /tokenize (HTTP ${res.statusCode}): assuming 1 token a word`,
      };
    }
    return {
      shape: { tokensPerWord: count / SAMPLE_WORDS },
      source: "tokenize",
      detail: `${count} tokens for ${SAMPLE_WORDS} words`,
    };
  } catch (err) {
    return {
      shape: { tokensPerWord: 1 },
      source: "assumed",
      detail: `/tokenize failed (${(err as Error).message}): assuming 1 token a word`,
    };
  }
}
