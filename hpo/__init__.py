"""hpo: hyperparameter optimization of distributed PyTorch training jobs.

The Python API mirrors the study file::

    import hpo
    spec = hpo.load_spec("studies/quickstart.yaml")
    study = hpo.optimize(spec, n_trials=20)
    print(study.best_params, study.best_value)
"""

from __future__ import annotations

from hpo.exceptions import HpoError, SpecError, StorageError, StudyNotFoundError, TrialPruned
from hpo.execution import TrialContext, load_study, optimize
from hpo.spec import StudySpec, load_spec, spec_from_dict

__all__ = [
    "HpoError",
    "SpecError",
    "StorageError",
    "StudyNotFoundError",
    "StudySpec",
    "TrialContext",
    "TrialPruned",
    "load_spec",
    "load_study",
    "optimize",
    "spec_from_dict",
]

__version__ = "0.1.0"
