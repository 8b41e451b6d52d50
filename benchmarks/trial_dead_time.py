"""Dead time between consecutive 2-worker trials: hpo's warm pool vs torchrun vs Ray Train.

Dead time is the wall time from the end of trial k to the first training step of trial
k+1: what a study pays per trial besides training. The same small data-parallel job (an
MLP on digits, one short epoch through the engine) runs:

- under ``hpo`` (2 workers, warm worker pool): trial k+1's first step minus trial k's end;
- under ``torchrun --nproc_per_node 2``, started once per trial (a cold start each time):
  launch to first step;
- under Ray Train's ``TorchTrainer(ScalingConfig(num_workers=2))`` when ``ray[train]`` is
  installed: ``fit()`` call to first step.

    python benchmarks/trial_dead_time.py --trials 6
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent


def _train_steps(report_first_step: Any) -> None:
    """The job: one pass of 8 micro-batches of digits through a 2-layer MLP."""
    import engine
    from engine.models import MLPClassifier

    from hpo.tasks.digits import load_data

    train_set, _ = load_data()
    eng = engine.initialize(MLPClassifier(64, 64, 10, 0.0, "relu"), {"train_micro_batch_size_per_gpu": 32})
    for i, (x, y) in enumerate(eng.dataloader(train_set, seed=0)):
        eng.backward(F.cross_entropy(eng(x.to(eng.device)), y.to(eng.device)))
        eng.step()
        eng.zero_grad()
        if i == 0:
            report_first_step(time.time())
        if i == 7:
            break


def train(ctx: Any) -> dict[str, float]:
    """hpo entrypoint: the job, timestamped."""
    first: list[float] = []
    _train_steps(first.append)
    return {"value": 0.0, "first_step": first[0], "end": time.time()}


def run_hpo(trials: int) -> list[float]:
    import hpo
    from hpo.reporting import Progress

    tmp = Path(tempfile.mkdtemp(prefix="hpo-dead-"))
    spec = hpo.spec_from_dict(
        {
            "name": "dead",
            "storage": f"sqlite:///{tmp}/db.sqlite",
            "run_dir": str(tmp / "runs"),
            "n_trials": trials,
            "sampler": {"type": "random", "seed": 0},
            "checkpoints": {"enabled": False},
            "trial": {"entrypoint": "trial_dead_time:train", "resources": {"workers": 2}},
            "search_space": {"x": {"type": "float", "low": 0, "high": 1}},
        }
    )
    study = hpo.optimize(spec, progress=Progress())
    m = [t.user_attrs["hpo:metrics"] for t in sorted(study.trials, key=lambda t: t.number)]
    return [b["first_step"] - a["end"] for a, b in zip(m, m[1:])]


_TORCHRUN_SCRIPT = """
import sys, time, json
sys.path.insert(0, {here!r})
import trial_dead_time as b
import torch.distributed as dist
b._train_steps(lambda t: dist.get_rank() == 0 and open({out!r}, "w").write(json.dumps(t)))
"""


def run_torchrun(trials: int) -> list[float]:
    tmp = Path(tempfile.mkdtemp(prefix="hpo-torchrun-"))
    out = tmp / "first_step.json"
    script = tmp / "job.py"
    script.write_text(_TORCHRUN_SCRIPT.format(here=str(HERE), out=str(out)))
    gaps = []
    for _ in range(trials):
        out.unlink(missing_ok=True)
        t0 = time.time()
        subprocess.run(
            [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script)],
            check=True,
            capture_output=True,
        )
        gaps.append(json.loads(out.read_text()) - t0)
    return gaps


def run_ray_train(trials: int) -> list[float] | None:
    try:
        import ray
        from ray.train import ScalingConfig
        from ray.train.torch import TorchTrainer
    except ImportError:
        return None

    def loop(config: dict) -> None:
        import ray.train

        sys.path.insert(0, str(HERE))
        import trial_dead_time as b

        b._train_steps(lambda t: ray.train.get_context().get_world_rank() == 0 and ray.train.report({"first_step": t}))

    # Logical CPUs: Ray Train needs one for its controller besides the two workers.
    ray.init(num_cpus=4, include_dashboard=False, _node_ip_address="127.0.0.1")
    gaps = []
    try:
        for _ in range(trials):
            t0 = time.time()
            result = TorchTrainer(loop, scaling_config=ScalingConfig(num_workers=2)).fit()
            gaps.append(result.metrics["first_step"] - t0)
    finally:
        ray.shutdown()
    return gaps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=6)
    ap.add_argument("--no-ray", action="store_true", help="skip Ray Train")
    args = ap.parse_args()
    torch.set_num_threads(1)
    hpo_gaps = run_hpo(args.trials)
    tr_gaps = run_torchrun(max(3, args.trials // 2))
    ours = statistics.median(hpo_gaps)
    print(f"hpo warm pool  dead time: median {ours:.3f}s over {len(hpo_gaps)} gaps")
    print(f"torchrun cold  dead time: median {statistics.median(tr_gaps):.3f}s over {len(tr_gaps)} starts")
    print(f"ratio hpo/torchrun: {ours / statistics.median(tr_gaps):.3f} (goal <= 0.1)")
    rt = None if args.no_ray else run_ray_train(max(2, args.trials // 3))
    if rt:
        print(f"Ray Train      dead time: median {statistics.median(rt):.3f}s over {len(rt)} fits")
        print(f"ratio hpo/ray_train: {ours / statistics.median(rt):.3f} (goal <= 0.02)")
    else:
        print("Ray Train: not measured (ray[train] not installed or --no-ray)")


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
