# PEFT LoRA adapters for the interop suite's tiny Llama, made at test time into the run's folder (never
# kept in the repository): no model hub is reachable, and what the router checks (loading through the
# engine's API, token ids after a load, the adapter's block hashes) needs only adapters vLLM accepts.
# Each is `adapter_config.json` (peft_type LORA, r, lora_alpha, target_modules q_proj/v_proj) and
# `adapter_model.safetensors` with random bfloat16 lora_A / lora_B for every layer, from a fixed torch
# seed per adapter (lora_B random too, unlike PEFT's zero init, so an adapter changes the output).
# Arguments: MODEL_DIR OUT_DIR BASE_NAME RANK NAME... (BASE_NAME: the served base model, the PEFT
# config's base_model_name_or_path)
import json
import os
import sys

import torch
from safetensors.torch import save_file


def main() -> None:
    model_dir, out_dir, base, rank = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    names = sys.argv[5:]
    with open(os.path.join(model_dir, "config.json")) as f:
        cfg = json.load(f)
    hidden = cfg["hidden_size"]
    head_dim = cfg.get("head_dim") or hidden // cfg["num_attention_heads"]
    outs = {
        "q_proj": cfg["num_attention_heads"] * head_dim,
        "v_proj": cfg.get("num_key_value_heads", cfg["num_attention_heads"]) * head_dim,
    }
    for k, name in enumerate(names):
        torch.manual_seed(1000 + k)
        tensors = {}
        for layer in range(cfg["num_hidden_layers"]):
            for proj, out in outs.items():
                key = f"base_model.model.model.layers.{layer}.self_attn.{proj}"
                tensors[f"{key}.lora_A.weight"] = (torch.randn(rank, hidden) * 0.1).to(torch.bfloat16)
                tensors[f"{key}.lora_B.weight"] = (torch.randn(out, rank) * 0.1).to(torch.bfloat16)
        d = os.path.join(out_dir, name)
        os.makedirs(d, exist_ok=True)
        save_file(tensors, os.path.join(d, "adapter_model.safetensors"))
        with open(os.path.join(d, "adapter_config.json"), "w") as f:
            json.dump(
                {
                    "peft_type": "LORA",
                    "task_type": "CAUSAL_LM",
                    "r": rank,
                    "lora_alpha": 2 * rank,
                    "lora_dropout": 0.0,
                    "bias": "none",
                    "fan_in_fan_out": False,
                    "target_modules": list(outs),
                    "base_model_name_or_path": base,
                },
                f,
                indent=1,
            )
    print(f"{len(names)} adapters of rank {rank} in {out_dir}")


if __name__ == "__main__":
    main()
