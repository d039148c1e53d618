// Reads a request body with a byte limit, and parses JSON bodies into a plain object, so that
// malformed input becomes a 4xx HttpError at the boundary and never reaches the core.
import type { IncomingMessage, ServerResponse } from "node:http";
import { HttpError } from "./errors.js";
import { jsonThread } from "./json-thread.js";
import { CancelledError } from "../errors/index.js";

/** 413 for a body over the limit: never buffered past it (a declared Content-Length over it: not at all). */
export function bodyTooLarge(what: string, limitBytes: number): HttpError {
  return new HttpError(413, `${what} exceeds the limit of ${limitBytes} bytes`);
}

/** How long the rest of a refused body may keep arriving (read and dropped, never kept). */
const LINGER_MS = 2000;

/**
 * A request refused while its body is still arriving: once the answer is out, the rest of the body is
 * read and dropped for up to LINGER_MS, then the connection is cut. Closing at once would make the
 * client's kernel discard the answer (a reset while it is still sending); reading on forever would
 * let it send gigabytes. Nginx's lingering close does the same.
 */
export function lingerAfterRefusal(req: IncomingMessage, res: ServerResponse): void {
  if (req.complete) return;
  res.once("finish", () => {
    if (req.complete) return;
    const cut = setTimeout(() => req.socket?.destroy(), LINGER_MS);
    cut.unref();
    req.once("end", () => clearTimeout(cut));
    req.resume();
  });
}

/**
 * The whole body, up to `limitBytes`. With listeners rather than an async iterator: an iterator left
 * by a throw destroys the request and its socket, and the 413 with it.
 */
export function readBody(req: IncomingMessage, limitBytes: number): Promise<Buffer> {
  const declared = req.headers["content-length"];
  if (declared !== undefined && Number(declared) > limitBytes) {
    return Promise.reject(bodyTooLarge(`request body of ${declared} bytes`, limitBytes));
  }
  return new Promise<Buffer>((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const done = (err: Error | undefined) => {
      req.off("data", onData);
      req.off("end", onEnd);
      req.off("error", done);
      req.off("close", onClose);
      if (err) reject(err);
      else resolve(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size));
    };
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > limitBytes) done(bodyTooLarge("request body", limitBytes));
      else chunks.push(chunk);
    };
    const onEnd = () => done(undefined);
    const onClose = () =>
      done(new CancelledError("client closed the connection before sending the whole body"));
    req.on("data", onData);
    req.on("end", onEnd);
    req.on("error", done);
    req.on("close", onClose);
  });
}

/** Maximum nesting depth accepted in a JSON body; deeper bodies are a client error, not a stack overflow. */
export const MAX_JSON_DEPTH = 64;

/**
 * Nesting depth within `max`. Strings are skipped with indexOf (a memchr-speed scan) rather than
 * char by char: a 5 MB prompt is one string, and the char loop cost 30–80 ms of the event loop.
 */
function depthOk(text: string, max: number): boolean {
  let depth = 0;
  const n = text.length;
  for (let i = 0; i < n; i++) {
    const c = text.charCodeAt(i);
    if (c === 34) {
      // to the closing quote: one not preceded by an odd run of backslashes
      let j = i;
      for (;;) {
        j = text.indexOf('"', j + 1);
        if (j < 0) return true; // unterminated: JSON.parse reports it
        let k = j - 1;
        while (text.charCodeAt(k) === 92) k--;
        if ((j - k) % 2 === 1) break;
      }
      i = j;
    } else if (c === 123 || c === 91) {
      if (++depth > max) return false;
    } else if (c === 125 || c === 93) depth--;
  }
  return true;
}

/** The content type must be JSON (or absent): 415 otherwise. */
function checkJsonType(req: Pick<IncomingMessage, "headers">): void {
  const ctype = (req.headers["content-type"] ?? "").toLowerCase();
  if (ctype && !ctype.includes("application/json") && !ctype.includes("+json")) {
    throw new HttpError(415, `unsupported Content-Type '${ctype}': expected application/json`);
  }
}

/** Parses JSON text that must be one object; malformed JSON, non-objects and deep nesting are 400. */
export function parseJsonText(text: string): Record<string, unknown> {
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

/** Parses a JSON object body; rejects wrong content types, malformed JSON, non-objects and deep nesting. */
export function parseJsonObject(
  req: Pick<IncomingMessage, "headers">,
  body: Buffer,
): Record<string, unknown> {
  checkJsonType(req);
  return parseJsonText(body.toString("utf8"));
}

/**
 * Bodies up to this size are parsed on the event loop (~3 ms); larger ones on a worker thread
 * (json-thread.ts): decoding, the depth scan and JSON.parse of a 5 MB prompt held a loop for 40+ ms.
 */
export const JSON_OFF_LOOP_BYTES = 1024 * 1024;

/** parseJsonObject, off the event loop for large bodies; the same errors either way. */
export function parseJsonObjectOffLoop(
  req: IncomingMessage,
  body: Buffer,
): Record<string, unknown> | Promise<Record<string, unknown>> {
  checkJsonType(req);
  if (body.length <= JSON_OFF_LOOP_BYTES) return parseJsonText(body.toString("utf8"));
  return jsonThread.parse(body);
}
