// LoRA adapters loaded at run time (vLLM's /v1/load_lora_adapter). The sim keeps only names and
// paths: an adapter changes which model name a request may use and the block hashes (the adapter name
// enters extra_keys), not the modelled timing.
import { HttpError } from "../../http/errors.js";

export interface LoraAdapter {
  name: string;
  path: string;
  /** registration order, from 1, like vLLM's lora_int_id */
  id: number;
  created: number;
}

/** Adapters registered at once; vLLM's CPU LoRA cache is bounded too (--max-cpu-loras). */
export const MAX_LORA_ADAPTERS = 1024;

export class LoraRegistry {
  private readonly adapters = new Map<string, LoraAdapter>();
  private nextId = 1;

  load(name: string, path: string): LoraAdapter {
    if (this.adapters.has(name)) {
      throw new HttpError(400, `The lora adapter '${name}' has already been loaded.`, "lora_name");
    }
    if (this.adapters.size >= MAX_LORA_ADAPTERS) {
      throw new HttpError(400, `at most ${MAX_LORA_ADAPTERS} LoRA adapters can be loaded; unload one first`);
    }
    const a = { name, path, id: this.nextId++, created: Math.floor(Date.now() / 1000) };
    this.adapters.set(name, a);
    return a;
  }

  unload(name: string): void {
    if (!this.adapters.delete(name)) {
      throw new HttpError(404, `The lora adapter '${name}' cannot be found.`, "lora_name");
    }
  }

  get(name: string): LoraAdapter | undefined {
    return this.adapters.get(name);
  }

  list(): LoraAdapter[] {
    return [...this.adapters.values()];
  }
}
