// PEFT LoRA adapter folders for tests and benches: adapter_config.json (peft_type LORA, r, lora_alpha,
// target_modules, base_model_name_or_path) and adapter_model.safetensors with lora_A / lora_B of every
// targeted projection of every layer. safetensors is an 8-byte little-endian header length, a JSON
// header naming each tensor's dtype, shape and byte range, then the raw bytes; the weights here are
// zeros (a real vLLM loads them all the same, and its output then equals the base model's).
import { mkdirSync, truncateSync, writeFileSync } from "node:fs";
import { join } from "node:path";

export interface PeftSpec {
  rank: number;
  /** hidden size of the base model (q/v projections are taken as hidden → hidden) */
  hidden: number;
  layers: number;
  modules?: string[];
  baseModel?: string;
  /** key prefix PEFT writes: base_model.model.model.layers.N.self_attn.<module> */
  attention?: boolean;
  /** the weights as a hole (a sparse file of the full size): for hundreds of adapters read only by size */
  sparse?: boolean;
}

/** Writes a PEFT adapter folder at `dir` and returns the weight file's size in bytes. */
export function writePeftAdapter(dir: string, spec: PeftSpec): number {
  const modules = spec.modules ?? ["q_proj", "v_proj"];
  mkdirSync(dir, { recursive: true });
  writeFileSync(
    join(dir, "adapter_config.json"),
    JSON.stringify({
      peft_type: "LORA",
      task_type: "CAUSAL_LM",
      r: spec.rank,
      lora_alpha: spec.rank * 2,
      lora_dropout: 0,
      bias: "none",
      target_modules: modules,
      base_model_name_or_path: spec.baseModel ?? null,
    }),
  );
  const header: Record<string, unknown> = {};
  let offset = 0;
  const bf16 = 2;
  for (let l = 0; l < spec.layers; l++) {
    for (const m of modules) {
      const prefix = `base_model.model.model.layers.${l}.self_attn.${m}`;
      for (const [name, shape] of [
        [`${prefix}.lora_A.weight`, [spec.rank, spec.hidden]],
        [`${prefix}.lora_B.weight`, [spec.hidden, spec.rank]],
      ] as const) {
        const n = shape[0] * shape[1] * bf16;
        header[name] = { dtype: "BF16", shape, data_offsets: [offset, offset + n] };
        offset += n;
      }
    }
  }
  let json = JSON.stringify(header);
  // the header is padded with spaces to a multiple of 8 bytes, as the safetensors writer pads it
  json += " ".repeat((8 - (Buffer.byteLength(json) % 8)) % 8);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(Buffer.byteLength(json)));
  const path = join(dir, "adapter_model.safetensors");
  const head = Buffer.concat([len, Buffer.from(json)]);
  if (spec.sparse) {
    writeFileSync(path, head);
    truncateSync(path, head.length + offset);
    return head.length + offset;
  }
  const file = Buffer.concat([head, Buffer.alloc(offset)]);
  writeFileSync(path, file);
  return file.length;
}
