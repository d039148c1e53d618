// vLLM release strings (as GET /version reports them) and what a KV-aware peer must know of each
// release's prefix-cache hashing, read in vLLM's own source (vllm/v1/core/kv_cache_utils.py of the
// PyPI builds): which extra-key form its block hashes take and which NONE_HASH seed it uses when
// PYTHONHASHSEED is unset.

/** "0.11.0rc2.dev3+g..." → [0, 11, 0]; unparseable → null */
export function parseVersion(v: string): number[] | null {
  const m = /^v?(\d+)\.(\d+)(?:\.(\d+))?/.exec(v.trim());
  return m ? [Number(m[1]), Number(m[2]), Number(m[3] ?? 0)] : null;
}

export function versionAtLeast(v: string, min: string): boolean {
  const a = parseVersion(v);
  const b = parseVersion(min);
  if (!a || !b) return false;
  for (let i = 0; i < 3; i++) if (a[i] !== b[i]) return a[i]! > b[i]!;
  return true;
}

/**
 * Since 0.31.0 a block's extra keys are tagged by source (`generate_block_hash_extra_keys`):
 * `("lora", name, path)`, `("mm", identifier, offset)`, `("cache_salt", salt)` on block 0,
 * `("prompt_embeds", digest)`; 0.30.0 and earlier hash the bare name and salt. KV events keep the
 * untagged values in every release (`to_event_extra_keys`).
 */
export const TAGGED_EXTRA_KEYS_SINCE = "0.31.0";

/**
 * Since 0.29.0, with PYTHONHASHSEED unset, sha256 and sha256_cbor derive NONE_HASH from this fixed
 * seed (`DEFAULT_NONE_HASH_SEED`, `resolve_none_hash_seed`), so engines agree without configuration;
 * xxhash keeps a random per-process seed. Before 0.29.0 an unset PYTHONHASHSEED meant a random
 * NONE_HASH (`os.urandom(32)`) that nobody outside the process can reproduce.
 */
export const FIXED_NONE_HASH_SEED_SINCE = "0.29.0";
export const VLLM_DEFAULT_NONE_HASH_SEED = "vllm-none-hash";
/**
 * The seed assumed for an engine older than 0.29.0 when nothing says otherwise: such an engine must
 * be started with a PYTHONHASHSEED to be reproducible at all, and "0" is what this project's docs and
 * chart have always set.
 */
export const PINNED_HASH_SEED = "0";

export type ExtraKeyStyle = "tagged" | "untagged";

/** The extra-key form a release hashes with (an unparseable version: the newest form). */
export function extraKeyStyleFor(version: string): ExtraKeyStyle {
  return parseVersion(version) === null || versionAtLeast(version, TAGGED_EXTRA_KEYS_SINCE)
    ? "tagged"
    : "untagged";
}

/**
 * The NONE_HASH seed of an engine of `version` started with `pythonHashSeed` (undefined: unset):
 * PYTHONHASHSEED when set; else, for sha256 / sha256_cbor, the fixed default since 0.29.0 and
 * PINNED_HASH_SEED before (see there); an unparseable version is taken as the newest.
 */
export function engineHashSeed(version: string, pythonHashSeed: string | undefined): string {
  if (pythonHashSeed !== undefined) return pythonHashSeed;
  return parseVersion(version) === null || versionAtLeast(version, FIXED_NONE_HASH_SEED_SINCE)
    ? VLLM_DEFAULT_NONE_HASH_SEED
    : PINNED_HASH_SEED;
}
