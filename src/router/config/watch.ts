// Watches the router's config file and calls back once per burst of changes. Editors replace files
// (rename over them) as often as they write them, so the folder is watched and the file's name picked
// out, and a burst is debounced into one call.
import { watch } from "node:fs";
import { basename, dirname } from "node:path";
import { logger } from "../../obs/log.js";

const log = logger("router");

/** Starts watching `file`; the returned function stops it. */
export function watchConfigFile(file: string, onChange: () => void): () => void {
  let debounce: NodeJS.Timeout | undefined;
  const name = basename(file);
  const watcher = watch(dirname(file), { persistent: false }, (_event, changed) => {
    if (changed !== null && changed !== name) return;
    clearTimeout(debounce);
    debounce = setTimeout(onChange, 100);
  });
  watcher.on("error", (err) => log.warn({ err: err.message }, "config watch failed"));
  return () => {
    clearTimeout(debounce);
    watcher.close();
  };
}
