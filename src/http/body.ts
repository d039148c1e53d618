// Reads a request body with a byte limit, and parses JSON bodies into a plain object, so that
// malformed input becomes a 4xx HttpError at the boundary and never reaches the core.
import type { IncomingMessage } from "node:http";
import { HttpError } from "./errors.js";

/**
 * 413 for a body over the limit, with `Connection: close`: the rest of the body is never read (a
 * declared Content-Length over the limit is refused before the first body byte), the connection
 * closes after the answer instead of draining megabytes to stay reusable.
 */
export function bodyTooLarge(what: string, limitBytes: number): HttpError {
  return new HttpError(413, `${what} exceeds the limit of ${limitBytes} bytes`, null, {
    connection: "close",
  });
}

export async function readBody(req: IncomingMessage, limitBytes: number): Promise<Buffer> {
  const declared = req.headers["content-length"];
  if (declared !== undefined && Number(declared) > limitBytes) {
    throw bodyTooLarge(`request body of ${declared} bytes`, limitBytes);
  }
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > limitBytes) throw bodyTooLarge("request body", limitBytes);
    chunks.push(chunk);
  }
  return chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size);
}

/** Maximum nesting depth accepted in a JSON body; deeper bodies are a client error, not a stack overflow. */
export const MAX_JSON_DEPTH = 64;

function depthOk(text: string, max: number): boolean {
  let depth = 0;
  let inStr = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inStr) {
      if (c === 92) i++;
      else if (c === 34) inStr = false;
    } else if (c === 34) inStr = true;
    else if (c === 123 || c === 91) {
      if (++depth > max) return false;
    } else if (c === 125 || c === 93) depth--;
  }
  return true;
}

/** Parses a JSON object body; rejects wrong content types, malformed JSON, non-objects and deep nesting. */
export function parseJsonObject(req: IncomingMessage, body: Buffer): Record<string, unknown> {
  const ctype = (req.headers["content-type"] ?? "").toLowerCase();
  if (ctype && !ctype.includes("application/json") && !ctype.includes("+json")) {
    throw new HttpError(415, `unsupported Content-Type '${ctype}': expected application/json`);
  }
  const text = body.toString("utf8");
  if (text.trim() === "") throw new HttpError(400, "request body is empty: expected a JSON object");
  if (!depthOk(text, MAX_JSON_DEPTH))
    throw new HttpError(400, `JSON nesting deeper than ${MAX_JSON_DEPTH} levels`);
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new HttpError(400, `malformed JSON body: ${(err as Error).message}`);
  }
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    throw new HttpError(400, "request body must be a JSON object");
  }
  return value as Record<string, unknown>;
}
