"""The study specification: typed models, YAML loading and the search space."""

from __future__ import annotations

from hpo.spec._load import load_entrypoint, load_spec, spec_from_dict
from hpo.spec._model import (
    CategoricalParam,
    CheckpointSpec,
    Direction,
    ExecutorSpec,
    FloatParam,
    IntParam,
    KeepSpec,
    PrunerSpec,
    ResourcesSpec,
    SamplerSpec,
    StudySpec,
    TrialSpec,
    check_study_name,
)
from hpo.spec._space import apply_engine_params, grid_search_space, sample_params, sampling_order

__all__ = [
    "apply_engine_params",
    "CategoricalParam",
    "CheckpointSpec",
    "Direction",
    "ExecutorSpec",
    "FloatParam",
    "IntParam",
    "KeepSpec",
    "PrunerSpec",
    "ResourcesSpec",
    "SamplerSpec",
    "StudySpec",
    "TrialSpec",
    "check_study_name",
    "grid_search_space",
    "load_entrypoint",
    "load_spec",
    "sample_params",
    "sampling_order",
    "spec_from_dict",
]
