// The interop vectors from shared/vectors, copied into the repo (test/fixtures/vectors) so that a
// clean clone tests against exactly the bytes it was written for.
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

export function vectorPath(name: string): string {
  // compiled tests live in dist/test/helpers, sources in test/helpers: the fixtures stay in test/fixtures
  const here = fileURLToPath(import.meta.url);
  const root = here.includes("/dist/test/")
    ? here.slice(0, here.indexOf("/dist/test/"))
    : here.slice(0, here.indexOf("/test/"));
  return `${root}/test/fixtures/vectors/${name}`;
}

export function readVectors<T = unknown>(name: string): T {
  return JSON.parse(readFileSync(vectorPath(name), "utf8")) as T;
}
