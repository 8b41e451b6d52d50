"""Tokens/s and MFU of a ~350M-parameter GPT in bf16 on one CUDA GPU.

GPT-2-medium shape (24 layers, 1024 wide, 16 heads, 1024 positions, 50304 vocab),
bf16 autocast through the engine, fused AdamW, PyTorch SDPA (flash attention kernel on
recent GPUs), gradient clipping 1.0. MFU uses the PaLM FLOP count
(``GPT.flops_per_token``) against the H200's dense bf16 peak of 989 TFLOP/s (override
with ``--peak-tflops``). Goal: MFU >= 45%. Takes well under 3 minutes.

    python benchmarks/engine_gpu_mfu.py [--compile] [--micro-batch 16] [--steps 30]
    python benchmarks/engine_gpu_mfu.py --compile --compile-loss --micro-batch 32
    python benchmarks/engine_gpu_mfu.py --compile-model --compile-loss --bf16-logits --micro-batch 32

``--compile`` compiles each transformer block (``--compile-model``: the whole model in one
graph); ``--compile-loss`` compiles the cross-entropy, so the fp32 upcast of the
16x1024x50304 logits is fused into the softmax instead of written to memory; that needs
``--bf16-logits`` (engine ``fp32_outputs: false``), or the engine has already written the
fp32 copy before the loss sees the logits.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from torch.nn import functional as F  # noqa: E402

import engine  # noqa: E402
from engine.models import GPT, GPTConfig  # noqa: E402

CFG = GPTConfig(vocab_size=50304, block_size=1024, n_layer=24, n_head=16, n_embd=1024, dropout=0.0, bias=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--compile", action="store_true", help="torch.compile each transformer block")
    parser.add_argument("--compile-model", action="store_true", help="torch.compile the whole model")
    parser.add_argument("--compile-loss", action="store_true", help="torch.compile the cross-entropy")
    parser.add_argument("--bf16-logits", action="store_true",
                        help="engine fp32_outputs: false, so the loss upcasts the logits itself")
    parser.add_argument("--micro-batch", type=int, default=16)
    parser.add_argument("--accum", type=int, default=1)
    parser.add_argument("--steps", type=int, default=30, help="timed optimizer steps")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps first (compilation)")
    parser.add_argument("--peak-tflops", type=float, default=989.0, help="dense bf16 peak of one GPU")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("engine_gpu_mfu.py needs a CUDA GPU and none is available; nothing was measured.")

    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    torch.manual_seed(0)
    model = GPT(CFG)
    if args.compile_model:
        model.compile()
    elif args.compile:
        for block in model.blocks():
            block.compile()
    eng = engine.initialize(model, {
        "train_micro_batch_size_per_gpu": args.micro_batch,
        "gradient_accumulation_steps": args.accum,
        "optimizer": {"type": "AdamW", "params": {"lr": 3e-4, "betas": [0.9, 0.95], "weight_decay": 0.1,
                                                   "fused": True}},
        "gradient_clipping": 1.0,
        "bf16": {"enabled": True},
        "fp32_outputs": not args.bf16_logits,
    }, peak_flops=args.peak_tflops * 1e12)
    gen = torch.Generator(device=eng.device).manual_seed(0)
    tokens = torch.randint(0, CFG.vocab_size, (args.micro_batch, CFG.block_size + 1), device=eng.device,
                           generator=gen)
    x, y = tokens[:, :-1], tokens[:, 1:]

    def lm_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits.float().view(-1, logits.size(-1)), targets.reshape(-1))

    loss_fn = torch.compile(lm_loss) if args.compile_loss else lm_loss

    def one_step() -> None:
        for _ in range(args.accum):
            eng.backward(loss_fn(eng(x), y))
            eng.step()
            eng.zero_grad()

    for _ in range(args.warmup):
        one_step()
    eng.metrics()  # start the measured window here
    start = time.perf_counter()
    for _ in range(args.steps):
        one_step()
    torch.cuda.synchronize()
    wall = time.perf_counter() - start
    m = eng.metrics()
    tokens_per_step = eng.train_batch_size * CFG.block_size
    tok_s = tokens_per_step * args.steps / wall
    mfu = model.flops_per_token(CFG.block_size) * tok_s / (args.peak_tflops * 1e12)
    print(f"device: {torch.cuda.get_device_name()}  torch {torch.__version__}  compile={'model' if args.compile_model else 'blocks' if args.compile else 'no'} "
          f"compiled loss={args.compile_loss} bf16 logits={args.bf16_logits}")
    print(f"model: GPT {model.num_params() / 1e6:.1f}M params, batch {eng.train_batch_size}x{CFG.block_size} "
          f"tokens/step, bf16, fused AdamW, clip 1.0")
    print(f"step time {wall / args.steps * 1e3:.1f} ms, tokens/s {tok_s:,.0f}, "
          f"peak memory {m.peak_memory_bytes / 2**30:.1f} GiB, loss {m.loss:.3f}")
    engine_mfu = "n/a" if m.mfu is None else f"{m.mfu * 100:.1f}%"
    print(f"MFU {mfu * 100:.1f}% of {args.peak_tflops:.0f} TFLOP/s (engine metrics: {engine_mfu}) (goal >= 45%)")


if __name__ == "__main__":
    main()
