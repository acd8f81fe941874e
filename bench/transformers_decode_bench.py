"""Decode tokens/s of the transformers backend for Qwen2.5-0.5B's architecture (random weights built
from its real config; nothing downloaded) against the memory-bandwidth bound of the device:
bound = measured bandwidth / bytes of weights read per token.

    .venv/bin/python bench/transformers_decode_bench.py            # CUDA when present, bf16
    .venv/bin/python bench/transformers_decode_bench.py --smoke    # a 2-layer cut on CPU, to check the code path
"""

from __future__ import annotations

import argparse
import time

# Qwen/Qwen2.5-0.5B-Instruct config.json (the fields that shape the compute).
QWEN25_05B = dict(
    vocab_size=151936,
    hidden_size=896,
    intermediate_size=4864,
    num_hidden_layers=24,
    num_attention_heads=14,
    num_key_value_heads=2,
    max_position_embeddings=32768,
    rope_theta=1000000.0,
    rms_norm_eps=1e-6,
    tie_word_embeddings=True,
    hidden_act="silu",
)


def bandwidth_gbs(torch, device: str) -> float:
    """Device memory bandwidth from a large copy (read + write)."""
    n = (1 << 30) if device == "cuda" else (1 << 27)
    src = torch.empty(n, dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    dst.copy_(src)
    best = float("inf")
    for _ in range(10):
        if device == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        dst.copy_(src)
        if device == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t)
    return 2 * n / best / 1e9


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--smoke", action="store_true", help="2 layers on CPU: checks the code path only")
    ap.add_argument("--new-tokens", type=int, default=256)
    args = ap.parse_args()

    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    device = "cuda" if torch.cuda.is_available() and not args.smoke else "cpu"
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    cfg = dict(QWEN25_05B, num_hidden_layers=2 if args.smoke else QWEN25_05B["num_hidden_layers"])
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(Qwen2Config(**cfg)).to(device=device, dtype=dtype).eval()
    n_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    new_tokens = 16 if args.smoke else args.new_tokens
    prompt = torch.randint(0, cfg["vocab_size"], (1, 32), device=device)
    gen = dict(max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False, pad_token_id=0)

    with torch.inference_mode():
        model.generate(prompt, **dict(gen, max_new_tokens=4, min_new_tokens=4))  # warm-up
        if device == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        model.generate(prompt, **gen)
        if device == "cuda":
            torch.cuda.synchronize()
        plain = new_tokens / (time.perf_counter() - t)

    bw = bandwidth_gbs(torch, device)
    bound = bw * 1e9 / n_bytes
    name = torch.cuda.get_device_name() if device == "cuda" else "CPU"
    print(f"device: {name}, dtype {dtype}, layers {cfg['num_hidden_layers']}, weights {n_bytes / 1e6:.0f} MB")
    print(f"plain generate, greedy, batch 1: {plain:.1f} tok/s")
    print(f"bandwidth {bw:.0f} GB/s -> bound {bound:.0f} tok/s; generate reaches {plain / bound:.2%} of it")


if __name__ == "__main__":
    main()
