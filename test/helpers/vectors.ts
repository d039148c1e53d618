// The interop vectors and reference text from shared/, copied into the repo (test/fixtures) so that a
// clean clone tests against exactly the bytes it was written for.
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

/** A file under test/fixtures, found from compiled (dist/test/helpers) or source (test/helpers) tests alike. */
export function fixturePath(relative: string): string {
  const here = fileURLToPath(import.meta.url);
  const root = here.includes("/dist/test/")
    ? here.slice(0, here.indexOf("/dist/test/"))
    : here.slice(0, here.indexOf("/test/"));
  return `${root}/test/fixtures/${relative}`;
}

export function vectorPath(name: string): string {
  return fixturePath(`vectors/${name}`);
}

export function readVectors<T = unknown>(name: string): T {
  return JSON.parse(readFileSync(vectorPath(name), "utf8")) as T;
}
