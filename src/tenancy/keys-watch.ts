// Watches the keys directory (a mounted Kubernetes Secret) and re-reads it on change. Kubelet swaps
// a `..data` symlink to publish a new Secret version, which shows up as renames in the directory,
// so the folder is watched and every event re-reads (debounced); a poll every few seconds catches
// filesystems that send no events. A bad read keeps the previous keys (logged, never echoed).
import { statSync, watch, type FSWatcher } from "node:fs";
import { logger } from "../obs/log.js";
import type { TenancyState } from "./state.js";

const log = logger("tenancy.keys");

export class KeysDirWatcher {
  private dir: string | undefined;
  private watcher: FSWatcher | undefined;
  private debounce: NodeJS.Timeout | undefined;
  private poll: NodeJS.Timeout | undefined;
  private lastStamp = "";

  constructor(
    private readonly state: TenancyState,
    private readonly pollMs = 5_000,
  ) {}

  /** Follows the directory the current config names (call after every reload). */
  sync(): void {
    const dir = this.state.config.keysDir;
    if (dir === this.dir) return;
    this.stop();
    this.dir = dir;
    if (!dir) return;
    this.lastStamp = stamp(dir);
    try {
      this.watcher = watch(dir, { persistent: false }, () => this.schedule());
      this.watcher.on("error", (err) => log.warn({ dir, err: err.message }, "keys directory watch failed"));
    } catch (err) {
      log.warn({ dir, err: (err as Error).message }, "cannot watch the keys directory; polling only");
    }
    this.poll = setInterval(() => {
      const s = stamp(dir);
      if (s !== this.lastStamp) this.schedule();
    }, this.pollMs);
    this.poll.unref();
  }

  private schedule(): void {
    clearTimeout(this.debounce);
    this.debounce = setTimeout(() => this.reload(), 100);
    this.debounce.unref();
  }

  private reload(): void {
    if (!this.dir) return;
    this.lastStamp = stamp(this.dir);
    try {
      this.state.reloadKeys();
      log.info({ dir: this.dir, tenants: this.state.tenantNames.length }, "keys reloaded");
    } catch (err) {
      log.error(
        { dir: this.dir, err: (err as Error).message },
        "keys reload failed; keeping the previous keys",
      );
    }
  }

  stop(): void {
    clearTimeout(this.debounce);
    clearInterval(this.poll);
    this.watcher?.close();
    this.watcher = undefined;
    this.poll = undefined;
  }
}

/** A cheap change marker: mtimes and sizes of the directory and its `..data` link target. */
function stamp(dir: string): string {
  try {
    const d = statSync(dir);
    let s = `${d.mtimeMs}`;
    try {
      const data = statSync(`${dir}/..data`);
      s += `:${data.mtimeMs}:${data.ino}`;
    } catch {
      // not a kubelet-mounted Secret
    }
    return s;
  } catch {
    return "missing";
  }
}
