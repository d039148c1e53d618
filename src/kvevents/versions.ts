// vLLM version strings, as GET /version reports them, and the event layout each release publishes.
import { versionAtLeast } from "../protocol/vllm-releases.js";
import { MAP_LAYOUT_SINCE, type KvEventLayout } from "./events.js";

export { parseVersion, versionAtLeast } from "../protocol/vllm-releases.js";

/** The layout a vLLM release writes its KV events in: tagged maps since 0.24.0, tagged arrays before. */
export function layoutForVersion(v: string): KvEventLayout {
  return versionAtLeast(v, MAP_LAYOUT_SINCE) ? "map" : "array";
}
