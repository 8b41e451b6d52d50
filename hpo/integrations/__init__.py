"""Sending a study's events to experiment trackers, next to (or instead of) the display.

Each integration is a :class:`hpo.reporting.Progress`; :class:`CompositeProgress` joins
several, so one study can show its live display and log to TensorBoard and MLflow::

    import hpo
    from hpo.integrations import CompositeProgress, MlflowProgress, TensorBoardProgress
    from hpo.reporting import make_progress

    hpo.optimize(
        hpo.load_spec("studies/quickstart.yaml"),
        progress=CompositeProgress(
            make_progress(),
            TensorBoardProgress("runs/tb"),
            MlflowProgress("sqlite:///mlflow.db"),
        ),
    )

TensorBoard and MLflow are optional: ``pip install 'hpo[tracking]'``.
"""

from __future__ import annotations

from hpo.integrations._composite import CompositeProgress
from hpo.integrations._mlflow import MlflowProgress
from hpo.integrations._tensorboard import TensorBoardProgress

__all__ = ["CompositeProgress", "MlflowProgress", "TensorBoardProgress"]
