"""Commands around a study's results, and a starting point for a new one.

report, dashboard, export, import and init.
"""

from __future__ import annotations

import argparse
import errno
import json
import socket
import sys
from pathlib import Path

from hpo.cli._common import EXIT_OK, add_command, database_url, resolve_study, study_ref
from hpo.exceptions import HpoError, SpecError

__all__ = ["INIT_FILES", "register"]


def _cmd_report(args: argparse.Namespace) -> int:
    from hpo.execution import load_study
    from hpo.report import write_report

    name, url, _ = resolve_study(args)
    study = load_study(name, url)
    try:
        path = write_report(study, args.output)
    except OSError as e:
        raise SpecError(f"cannot write {args.output}: {e.strerror or e}", key="--output") from None
    print(f"wrote {path} ({path.stat().st_size // 1024} KiB, {len(study.trials)} trials)")
    return EXIT_OK


def _cmd_dashboard(args: argparse.Namespace) -> int:
    from hpo.execution import load_study
    from hpo.storage import create_storage

    try:
        import optuna_dashboard
    except ImportError:
        raise HpoError("the dashboard needs optuna-dashboard: pip install 'hpo[dashboard]'") from None
    name, url, _ = resolve_study(args)
    load_study(name, url)  # a clear error for an unknown study before anything listens
    storage = create_storage(url)
    study_id = storage.get_study_id_from_name(name)
    try:
        socket.getaddrinfo(args.host, args.port, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        raise SpecError(f"not an address of this machine: {args.host!r} ({e.strerror})", key="--host") from None
    host = f"[{args.host}]" if ":" in args.host else args.host
    link = f"http://{host}:{args.port}/dashboard/studies/{study_id}"
    print(f"study {name!r}: {link}  (Ctrl-C stops)", flush=True)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(
            f"warning: the dashboard has no login; anyone who reaches {host}:{args.port} can read, "
            "edit and delete the studies in this database",
            file=sys.stderr,
        )
    try:
        optuna_dashboard.run_server(storage, host=args.host, port=args.port)
    except OSError as e:
        if e.errno == errno.EADDRNOTAVAIL:
            raise SpecError(f"not an address of this machine: {args.host!r}", key="--host") from None
        raise HpoError(f"cannot serve on {host}:{args.port}: {e.strerror or e}") from None
    except KeyboardInterrupt:
        pass
    return EXIT_OK


def _cmd_export(args: argparse.Namespace) -> int:
    from hpo.report import export_study
    from hpo.report._output import write_whole

    name, url, _ = resolve_study(args)
    archive = export_study(name, url)
    text = json.dumps(archive, indent=1, sort_keys=False) + "\n"
    if args.output == "-":
        sys.stdout.write(text)
        log = sys.stderr
    else:
        try:
            write_whole(Path(args.output), text)
        except OSError as e:
            raise SpecError(f"cannot write {args.output}: {e.strerror or e}", key="output") from None
        log = sys.stdout
    print(f"exported study {name!r}: {len(archive['trials'])} trials to {args.output}", file=log)
    return EXIT_OK


def _cmd_import(args: argparse.Namespace) -> int:
    from hpo.report import import_study
    from hpo.storage import redact_url

    try:
        raw = sys.stdin.read() if args.archive == "-" else Path(args.archive).read_text(encoding="utf-8")
        archive = json.loads(raw)
    except OSError as e:
        raise SpecError(f"cannot read archive: {e.strerror or e}", file=args.archive) from None
    except json.JSONDecodeError as e:
        raise SpecError(f"not valid JSON: {e.msg}", file=args.archive, line=e.lineno) from None
    try:
        study = import_study(archive, args.storage, study_name=args.study)
    except SpecError as e:
        e.file = e.file or args.archive
        raise
    n = len(archive["trials"])
    print(f"imported study {study.study_name!r}: {n} trials into {redact_url(args.storage)}")
    return EXIT_OK


_STUDY_FILE = """\
# A starter study: tune the training function in my_task.py.
#   check it:   PYTHONPATH=. hpo validate studies/my_study.yaml
#   run it:     PYTHONPATH=. hpo optimize studies/my_study.yaml
#   look at it: hpo report studies/my_study.yaml -o report.html
# Every key is described in docs/STUDY_SPEC.md of hpo.
name: my_study
storage: sqlite:///my_study.db
direction: maximize
metric: val_accuracy                 # a key of the dict train() returns
sampler: {type: tpe, seed: 0}
pruner: {type: median, n_startup_trials: 5}
n_trials: 20
concurrency: 1
trial:
  entrypoint: my_task:train          # module:function, imported from PYTHONPATH
  max_epochs: 5
  resources: {workers: 1, device: cpu}
  engine: {precision: fp32}          # engine config (DeepSpeed keys), seen as ctx.engine_config
search_space:
  lr: {type: float, low: 1.0e-4, high: 1.0e-1, log: true}
  weight_decay: {type: float, low: 1.0e-6, high: 1.0e-2, log: true}
  hidden: {type: int, low: 16, high: 256, step: 16}
  dropout: {type: float, low: 0.0, high: 0.5}
  batch_size: {type: categorical, choices: [32, 64, 128]}
  engine.gradient_clipping: {type: categorical, choices: [0.0, 1.0]}   # written into ctx.engine_config
"""

_TASK_FILE = '''\
"""The training function of my_study; replace the data, model and metric with yours.

``hpo optimize studies/my_study.yaml`` calls ``train(ctx)`` once per trial. ``ctx.params``
holds the sampled hyperparameters, ``ctx.engine_config`` the study's ``trial.engine`` with
sampled ``engine.*`` values, and ``ctx.report(value, step)`` lets the pruner stop a poor
trial early. The returned dict holds the study's metric and any extra numbers to keep.
"""

from __future__ import annotations

from typing import Any

import engine
import hpo
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import TensorDataset


def make_data(seed: int = 0) -> tuple[TensorDataset, TensorDataset]:
    """Train and validation splits of scikit-learn's bundled digits (no download)."""
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x = torch.tensor(x, dtype=torch.float32) / 16.0
    y = torch.tensor(y, dtype=torch.long)
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    val, tr = perm[:360], perm[360:]
    return TensorDataset(x[tr], y[tr]), TensorDataset(x[val], y[val])


def make_model(params: dict[str, Any]) -> nn.Module:
    """A one-hidden-layer MLP for 8x8 images."""
    hidden = int(params["hidden"])
    dropout = float(params["dropout"])
    return nn.Sequential(nn.Linear(64, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, 10))


@torch.no_grad()
def accuracy(eng: engine.Engine, data: TensorDataset) -> float:
    """Fraction of ``data`` classified correctly."""
    eng.eval()
    x, y = data.tensors
    correct = (eng(x.to(eng.device)).argmax(-1).cpu() == y).float().mean()
    eng.train()
    return float(correct)


def train(ctx: hpo.TrialContext) -> dict[str, float]:
    """Train for ``ctx.max_epochs`` epochs, reporting validation accuracy after each."""
    p = ctx.params
    torch.manual_seed(ctx.seed)
    train_set, val_set = make_data()
    config = {
        **ctx.engine_config,
        "train_micro_batch_size_per_gpu": int(p["batch_size"]),
        "optimizer": {"type": "AdamW", "params": {"lr": p["lr"], "weight_decay": p["weight_decay"]}},
    }
    eng = engine.initialize(make_model(p), config)
    loader = eng.dataloader(train_set, shuffle=True, seed=ctx.seed)
    acc = 0.0
    for epoch in range(ctx.max_epochs):
        for x, y in loader:
            eng.backward(F.cross_entropy(eng(x), y))
            eng.step()
            eng.zero_grad()
        acc = accuracy(eng, val_set)
        ctx.report(acc, epoch + 1)  # raises hpo.TrialPruned when the pruner stops this trial
    return {"val_accuracy": acc, "samples_per_s": float(eng.metrics().samples_per_s or 0.0)}
'''

INIT_FILES: dict[str, str] = {"studies/my_study.yaml": _STUDY_FILE, "my_task.py": _TASK_FILE}
"""What ``hpo init`` writes: path relative to the target directory -> content."""


def _cmd_init(args: argparse.Namespace) -> int:
    root = Path(args.dir)
    if root.exists() and not root.is_dir():
        raise SpecError(f"{str(root)!r} is a file, not a directory", key="DIR")
    existing = [rel for rel in INIT_FILES if (root / rel).exists()]
    if existing:
        raise SpecError(f"will not overwrite {', '.join(str(root / rel) for rel in existing)}")
    for rel, text in INIT_FILES.items():
        path = root / rel
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        except OSError as e:
            raise SpecError(f"cannot write {str(path)!r}: {e.strerror}", key="DIR") from None
        print(f"wrote {path}")
    cd = f"cd {args.dir} && " if args.dir != "." else ""
    print(f"next: {cd}PYTHONPATH=. hpo optimize studies/my_study.yaml")
    return EXIT_OK


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"a port is 0-65535 (got {text!r})")
    return port


def register(sub: argparse._SubParsersAction) -> None:
    """Add this module's commands to the ``hpo`` parser."""
    p = add_command(sub, "report", "write a self-contained HTML report of a study", _cmd_report,
                    "hpo report studies/quickstart.yaml -o quickstart.html")
    study_ref(p)
    p.add_argument("-o", "--output", default="report.html", help="HTML file to write (default: report.html)")

    p = add_command(sub, "dashboard", "serve optuna-dashboard on a study's database", _cmd_dashboard,
                    "hpo dashboard studies/quickstart.yaml --port 8080")
    study_ref(p)
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1, this machine only; 0.0.0.0: all networks)")
    p.add_argument("--port", type=_port, default=8080, help="port to listen on (default 8080)")

    p = add_command(sub, "export", "write a study, every trial included, to a JSON archive", _cmd_export,
                    "hpo export studies/quickstart.yaml quickstart.json")
    study_ref(p)
    p.add_argument("output", help="the JSON file to write ('-' for standard output)")

    p = add_command(sub, "import", "create a study from a JSON archive made by `hpo export`", _cmd_import,
                    "hpo import quickstart.json --storage postgresql://hpo@db.example/hpo")
    p.add_argument("archive", help="the JSON archive ('-' for standard input)")
    p.add_argument("--storage", required=True, type=database_url, help="database URL to create the study in")
    p.add_argument("--study", help="a new name for the study (default: its name in the archive)")

    p = add_command(sub, "init", "write a starter study file and training function", _cmd_init,
                    "hpo init my_project && cd my_project && PYTHONPATH=. hpo optimize studies/my_study.yaml")
    p.add_argument("dir", nargs="?", default=".", help="directory to write into (default: the current one)")
