// Reads a JSON request body with the same limits and messages as src/http/body.ts's readBody, but
// with plain 'data'/'end' listeners: the async-iterator version allocates an iterator and a promise
// per chunk, which showed up on the router's per-request profile. The listeners are inline and
// settle once (no removal bookkeeping, no named closures to allocate and name per request).
import type { IncomingMessage } from "node:http";
import { HttpError } from "../http/errors.js";

const EMPTY = Buffer.alloc(0);

export function readRequestBody(req: IncomingMessage, limitBytes: number): Promise<Buffer> {
  const declared = req.headers["content-length"];
  if (declared !== undefined && Number(declared) > limitBytes) {
    req.resume();
    return Promise.reject(
      new HttpError(413, `request body of ${declared} bytes exceeds the limit of ${limitBytes} bytes`),
    );
  }
  return new Promise<Buffer>((resolve, reject) => {
    const s: { first: Buffer | undefined; more: Buffer[] | undefined; size: number; done: boolean } = {
      first: undefined,
      more: undefined,
      size: 0,
      done: false,
    };
    req.on("data", (chunk: Buffer) => {
      if (s.done) return;
      s.size += chunk.length;
      if (s.size > limitBytes) {
        s.done = true;
        s.first = s.more = undefined;
        req.resume();
        reject(new HttpError(413, `request body exceeds the limit of ${limitBytes} bytes`));
      } else if (s.first === undefined) s.first = chunk;
      else (s.more ??= [s.first]).push(chunk);
    });
    req.on("end", () => {
      if (s.done) return;
      s.done = true;
      resolve(s.more ? Buffer.concat(s.more, s.size) : (s.first ?? EMPTY));
    });
    req.on("error", (err: Error) => {
      if (s.done) return;
      s.done = true;
      reject(err);
    });
    req.on("close", () => {
      if (s.done) return;
      s.done = true;
      reject(new Error("client closed the connection before sending the whole body"));
    });
  });
}
