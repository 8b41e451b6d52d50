#!/usr/bin/env bash
# The GPU checks, in one run on a CUDA machine: the engine's MFU benchmark (eager and
# compiled), fp16 dynamic loss scaling on CUDA, and an hpo study on the GPU.
# Usage: bash benchmarks/gpu_checks.sh OUTDIR   (python3 must hold a CUDA torch)
set -uo pipefail
OUT=${1:-gpu_out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())" | tee -a "$OUT/gpu.txt"

echo "== MFU, eager ==" | tee "$OUT/mfu.txt"
timeout 240 python3 benchmarks/engine_gpu_mfu.py --steps 20 2>&1 | tee -a "$OUT/mfu.txt"
echo "== MFU, per block + compiled loss, micro-batch 32 ==" | tee -a "$OUT/mfu.txt"
timeout 300 python3 benchmarks/engine_gpu_mfu.py --steps 15 --compile --compile-loss --micro-batch 32 2>&1 | tail -15 | tee -a "$OUT/mfu.txt"
echo "== MFU, per block + compiled loss on bf16 logits, micro-batch 32 ==" | tee -a "$OUT/mfu.txt"
timeout 300 python3 benchmarks/engine_gpu_mfu.py --steps 15 --compile --compile-loss --bf16-logits --micro-batch 32 2>&1 | tail -15 | tee -a "$OUT/mfu.txt"
echo "== MFU, whole model + compiled loss on bf16 logits, micro-batch 32 ==" | tee -a "$OUT/mfu.txt"
timeout 300 python3 benchmarks/engine_gpu_mfu.py --steps 15 --compile-model --compile-loss --bf16-logits --micro-batch 32 2>&1 | tail -15 | tee -a "$OUT/mfu.txt"

echo "== fp16 loss scaling on CUDA ==" | tee "$OUT/fp16.txt"
timeout 120 python3 - <<'PY' 2>&1 | tee -a "$OUT/fp16.txt"
import torch, torch.nn.functional as F
import engine
from engine.models import GPT, GPTConfig
torch.manual_seed(0)
m = GPT(GPTConfig(vocab_size=96, block_size=128, n_layer=4, n_head=4, n_embd=256, dropout=0.0))
eng = engine.initialize(m, {"train_micro_batch_size_per_gpu": 32, "fp16": {"enabled": True, "loss_scale": 0, "initial_scale_power": 16},
                            "optimizer": {"type": "AdamW", "params": {"lr": 1e-3}}, "gradient_clipping": 1.0})
x = torch.randint(0, 96, (32, 129), device=eng.device)
losses = []
for step in range(60):
    logits = eng(x[:, :-1])
    loss = F.cross_entropy(logits.view(-1, 96), x[:, 1:].reshape(-1))
    eng.backward(loss); eng.step(); eng.zero_grad()
    losses.append(loss.item())
mt = eng.metrics()
print("device", eng.device, "first loss", round(losses[0], 4), "last loss", round(losses[-1], 4),
      "loss_scale", mt.loss_scale, "skipped", eng.skipped_steps, "tokens/s", round(mt.tokens_per_s or 0))
assert losses[-1] < losses[0] * 0.5, "fp16 training did not learn"
print("fp16 OK")
PY

echo "== hpo study on the GPU ==" | tee "$OUT/study.txt"
cd "$(mktemp -d)" && cp -r "$OLDPWD/studies" "$OLDPWD/search_spaces" . 
timeout 300 python3 -m hpo.cli optimize studies/gpu_char_lm.yaml 2>&1 | tee -a "$OUT/study.txt"
python3 -m hpo.cli trials studies/gpu_char_lm.yaml --format csv 2>&1 | tee -a "$OUT/study.txt"
python3 -m hpo.cli logs studies/gpu_char_lm.yaml 0 2>&1 | tail -5 | tee -a "$OUT/study.txt"
