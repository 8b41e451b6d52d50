"""Typed study specification: what a study file says, validated.

The models reject unknown keys (``extra="forbid"``) and check the semantics of every
value in their validators; :mod:`hpo.spec._load` turns the resulting errors into
:class:`~hpo.exceptions.SpecError` messages that name the file, key and value.
"""

from __future__ import annotations

import math
import re
from enum import Enum
from typing import Annotated, Any, Literal, Union

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    field_validator,
    model_validator,
)

__all__ = [
    "CategoricalParam",
    "CheckpointSpec",
    "Direction",
    "ExecutorSpec",
    "FloatParam",
    "IntParam",
    "KeepSpec",
    "Param",
    "PrunerSpec",
    "ResourcesSpec",
    "SamplerSpec",
    "StudySpec",
    "TrialSpec",
    "check_study_name",
]


def _not_bool(value: Any) -> Any:
    # YAML reads yes/no/true/false as booleans, and pydantic would take them for 1 and 0.
    if isinstance(value, bool):
        raise ValueError(f"must be a number, not the boolean {str(value).lower()}")
    return value


Int = Annotated[int, BeforeValidator(_not_bool)]
"""An int that refuses booleans (``n_trials: yes`` is an error, not one trial)."""
Float = Annotated[float, BeforeValidator(_not_bool)]
"""A float that refuses booleans."""

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_ENTRYPOINT_RE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
_PARAM_RE = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*$")


class KeyError_(ValueError):
    """A validation error that belongs to one sub-key of the model that raised it."""

    def __init__(self, key: str, message: str) -> None:
        self.key = key
        super().__init__(message)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


Choice = Union[bool, int, float, str, None]


class _ParamBase(_Strict):
    when: dict[str, Union[Choice, list[Choice]]] | None = None
    """Sample this parameter only when every named parameter has (one of) the given value(s)."""

    def condition_values(self) -> dict[str, list[Choice]]:
        """``when`` with every value normalized to a list of accepted values."""
        out: dict[str, list[Choice]] = {}
        for name, v in (self.when or {}).items():
            out[name] = list(v) if isinstance(v, list) else [v]
        return out


class FloatParam(_ParamBase):
    """A float in ``[low, high]``, optionally log-scaled or discretized by ``step``."""

    type: Literal["float"]
    low: Float
    high: Float
    log: StrictBool = False
    step: Float | None = None

    @model_validator(mode="after")
    def _check(self) -> FloatParam:
        for key in ("low", "high"):
            if not math.isfinite(getattr(self, key)):
                raise KeyError_(key, f"must be a finite number (got {getattr(self, key)!r})")
        if self.low > self.high:
            raise KeyError_("low", f"low must be <= high (got low={self.low}, high={self.high})")
        if self.log and self.low <= 0:
            raise KeyError_("low", f"log: true needs low > 0 (got low={self.low})")
        if self.step is not None and self.step <= 0:
            raise KeyError_("step", f"step must be > 0 (got step={self.step})")
        if self.log and self.step is not None:
            raise KeyError_("step", "step cannot be combined with log: true")
        return self


class IntParam(_ParamBase):
    """An integer in ``[low, high]`` on a grid of ``step``, optionally log-scaled."""

    type: Literal["int"]
    low: Int
    high: Int
    step: Int = 1
    log: StrictBool = False

    @model_validator(mode="after")
    def _check(self) -> IntParam:
        if self.low > self.high:
            raise KeyError_("low", f"low must be <= high (got low={self.low}, high={self.high})")
        if self.step < 1:
            raise KeyError_("step", f"step must be >= 1 (got step={self.step})")
        if self.log and self.low <= 0:
            raise KeyError_("low", f"log: true needs low > 0 (got low={self.low})")
        if self.log and self.step != 1:
            raise KeyError_("step", f"step must be 1 with log: true (got step={self.step})")
        return self


class CategoricalParam(_ParamBase):
    """One of a fixed list of choices (strings, numbers, booleans or null)."""

    type: Literal["categorical"]
    choices: list[Choice]

    @field_validator("choices")
    @classmethod
    def _non_empty(cls, v: list[Choice]) -> list[Choice]:
        if not v:
            raise ValueError("choices must not be empty")
        if len(set(map(repr, v))) != len(v):
            raise ValueError(f"choices must be distinct (got {v!r})")
        return v


Param = Annotated[Union[FloatParam, IntParam, CategoricalParam], Field(discriminator="type")]


class Direction(str, Enum):
    """Whether a metric is better when smaller or larger."""

    MINIMIZE = "minimize"
    MAXIMIZE = "maximize"


class SamplerSpec(BaseModel):
    """Which Optuna sampler proposes parameters. Extra keys are passed to its constructor."""

    model_config = ConfigDict(extra="allow", frozen=True)
    type: Literal["random", "tpe", "grid", "cmaes", "gp", "qmc", "nsgaii", "bruteforce"] = "tpe"
    seed: Int | None = None

    @property
    def options(self) -> dict[str, Any]:
        """Constructor arguments other than ``seed``."""
        return dict(self.model_extra or {})


class PrunerSpec(BaseModel):
    """Which pruner stops unpromising trials. Extra keys are passed to its constructor."""

    model_config = ConfigDict(extra="allow", frozen=True)
    type: Literal[
        "none",
        "median",
        "percentile",
        "successive_halving",
        "asha",
        "hyperband",
        "threshold",
        "patience",
        "wilcoxon",
        "asha_promote",
    ] = "none"
    wrapped: PrunerSpec | None = None
    """For ``patience``: the pruner it wraps (default: none)."""

    @property
    def options(self) -> dict[str, Any]:
        """Constructor arguments other than ``type`` and ``wrapped``."""
        return dict(self.model_extra or {})

    @model_validator(mode="after")
    def _check_wrapped(self) -> PrunerSpec:
        if self.wrapped is not None and self.type != "patience":
            raise KeyError_("wrapped", f"only a patience pruner wraps another (type is {self.type!r})")
        return self


class ResourcesSpec(_Strict):
    """What one trial needs."""

    workers: Int = Field(1, ge=1)
    """Processes that form one trial's process group."""
    device: Literal["cpu", "cuda"] = "cpu"
    gpus_per_worker: Int = Field(0, ge=0)

    @model_validator(mode="after")
    def _check(self) -> ResourcesSpec:
        if self.device == "cpu" and self.gpus_per_worker:
            raise KeyError_(
                "gpus_per_worker", f"needs device: cuda (got gpus_per_worker={self.gpus_per_worker} with device: cpu)"
            )
        return self


class TrialSpec(_Strict):
    """How one trial runs."""

    entrypoint: str
    """``package.module:function``, called as ``function(ctx)``."""
    max_epochs: Int = Field(10, ge=1)
    resources: ResourcesSpec = ResourcesSpec()
    engine: dict[str, Any] = Field(default_factory=dict)
    """Engine configuration (DeepSpeed-style keys) given to every trial."""
    max_retries: Int = Field(0, ge=0)
    """How often a failed trial is run again with the same parameters, from its checkpoint."""

    @field_validator("entrypoint")
    @classmethod
    def _entrypoint_shape(cls, v: str) -> str:
        if not _ENTRYPOINT_RE.match(v):
            raise ValueError(f"must be 'package.module:function' (got {v!r})")
        return v


class ExecutorSpec(_Strict):
    """Where and how trials run."""

    type: Literal["local", "ray"] = "local"
    """``local``: worker processes on this machine; ``ray``: gangs of Ray actors on a Ray
    cluster, placed with placement groups (docs/RAY.md)."""
    address: str | None = None
    """``type: ray`` only: the cluster. ``auto`` (default: the cluster this machine belongs
    to, or ``$RAY_ADDRESS``), ``local`` (a cluster started for this study), ``ray://host:port``
    (Ray Client) or ``host:port`` (the head node's GCS)."""
    cpus_per_worker: Float | None = Field(None, gt=0)
    """``type: ray`` only: CPUs each worker's placement-group bundle reserves (default 1)."""
    isolation: Literal["process", "thread"] = "process"
    """``process``: each trial in worker processes of its own (crash-isolated, per-rank log
    files); ``thread``: 1-worker CPU trials in threads of the orchestrator (lowest overhead)."""
    reuse_workers: StrictBool = True
    """Keep worker processes warm across trials instead of starting them per trial."""
    heartbeat_interval: Int = Field(5, ge=1)
    """Seconds between heartbeats of a running trial."""
    grace_period: Int = Field(30, ge=1)
    """Seconds without a heartbeat after which a RUNNING trial is taken as lost and retried."""

    @model_validator(mode="after")
    def _check(self) -> ExecutorSpec:
        if self.type == "local":
            for key in ("address", "cpus_per_worker"):
                if getattr(self, key) is not None:
                    raise KeyError_(
                        key, f"applies to type: ray only (got {key}={getattr(self, key)!r} with type: local)"
                    )
        if self.type == "ray" and self.isolation == "thread":
            raise KeyError_(
                "isolation", "type: ray runs trials in Ray actors; isolation: thread is for type: local"
            )
        address_shape = r"auto|local|(ray://)?[\w.\-\[\]:]+:\d{1,5}"
        if self.address is not None and not re.fullmatch(address_shape, self.address):
            raise KeyError_(
                "address", f"must be auto, local, ray://host:port or host:port (got {self.address!r})"
            )
        if self.grace_period <= self.heartbeat_interval:
            raise KeyError_(
                "grace_period",
                f"must exceed heartbeat_interval (got grace_period={self.grace_period}, "
                f"heartbeat_interval={self.heartbeat_interval})",
            )
        return self


class KeepSpec(_Strict):
    """Which checkpoints survive."""

    best: Int = Field(1, ge=0)
    """Checkpoints of the best finished trials kept per study."""
    latest: Int = Field(1, ge=1)
    """Most recent checkpoints kept per trial while it runs (and for the kept trials)."""


class CheckpointSpec(_Strict):
    """Trial checkpoints: what retries and promotions resume from."""

    enabled: StrictBool = True
    """Whether ``ctx.save_checkpoint`` writes at all."""
    root: str | None = None
    """Directory of all checkpoints; default ``<run_dir>/checkpoints``."""
    keep: KeepSpec = KeepSpec()


def check_study_name(name: str) -> str:
    """``name`` if it is a safe study name (it names directories), else ValueError."""
    if not _NAME_RE.match(name) or ".." in name:
        raise ValueError(
            f"must be 1-128 letters, digits, '_', '-' or '.', starting with a letter or "
            f"digit, without '..' (got {name!r})"
        )
    return name


class StudySpec(_Strict):
    """A whole study: what to optimize, how to search and where to store it."""

    name: str
    storage: str | None = None
    """SQLAlchemy URL of the study database; default: ``sqlite:///hpo.db``."""
    direction: Direction | None = None
    directions: list[Direction] | None = None
    metric: str | list[str] = "value"
    """Name(s) of the returned metric(s) to optimize, one per direction."""
    sampler: SamplerSpec = SamplerSpec()
    pruner: PrunerSpec = PrunerSpec()
    n_trials: Int = Field(20, ge=1)
    timeout: Float | None = Field(None, gt=0)
    concurrency: Int = Field(1, ge=1)
    trial: TrialSpec
    executor: ExecutorSpec = ExecutorSpec()
    run_dir: str | None = None
    """Where logs and checkpoints go; default ``hpo_runs/<name>``."""
    checkpoints: CheckpointSpec = CheckpointSpec()
    search_space: dict[str, Param] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _safe_name(cls, v: str) -> str:
        return check_study_name(v)

    @field_validator("search_space")
    @classmethod
    def _param_names(cls, v: dict[str, Any]) -> dict[str, Any]:
        for name in v:
            if not _PARAM_RE.match(name):
                raise ValueError(f"parameter name {name!r} must be a dotted Python identifier")
        return v

    @model_validator(mode="after")
    def _check(self) -> StudySpec:
        if self.direction is not None and self.directions is not None:
            raise KeyError_("directions", "give either direction or directions, not both")
        metrics = self.metric_names
        if len(metrics) != len(self.study_directions):
            raise KeyError_(
                "metric",
                f"{len(metrics)} metric(s) {metrics} for {len(self.study_directions)} direction(s)",
            )
        if len(metrics) > 1 and self.pruner.type != "none":
            raise KeyError_(
                "pruner.type",
                f"{self.pruner.type!r} prunes on one objective and this study has {len(metrics)} {metrics}: "
                "use none (trials still report their first metric's curve)",
            )
        _check_conditions(self.search_space)
        if self.trial.entrypoint.startswith("__main__:") and (
            self.executor.type == "ray" or self.executor.isolation != "thread"
        ):
            raise KeyError_(
                "trial.entrypoint",
                f"{self.trial.entrypoint!r} is a function of the running script, which worker processes cannot "
                "import: put it in a module, or use executor.isolation: thread",
            )
        res = self.trial.resources
        if self.executor.isolation == "thread" and (res.workers > 1 or res.device != "cpu"):
            raise KeyError_(
                "executor.isolation",
                f"thread isolation runs 1-worker CPU trials only (workers={res.workers}, device={res.device})",
            )
        return self

    @property
    def study_directions(self) -> list[Direction]:
        """The optimization direction of each objective (default: one ``minimize``)."""
        if self.directions is not None:
            return list(self.directions)
        return [self.direction or Direction.MINIMIZE]

    @property
    def metric_names(self) -> list[str]:
        """The metric names, one per objective."""
        return [self.metric] if isinstance(self.metric, str) else list(self.metric)

    @property
    def storage_url(self) -> str:
        """The storage URL with the default applied."""
        return self.storage or "sqlite:///hpo.db"


def _check_conditions(space: dict[str, Any]) -> None:
    """Every ``when`` names an existing parameter with a value it can take; no cycles."""
    for name, p in space.items():
        for parent, values in p.condition_values().items():
            if parent not in space:
                raise KeyError_(
                    f"search_space.{name}.when",
                    f"refers to unknown parameter {parent!r}",
                )
            if parent == name:
                raise KeyError_(f"search_space.{name}.when", "a parameter cannot depend on itself")
            pp = space[parent]
            if isinstance(pp, CategoricalParam):
                bad = [v for v in values if v not in pp.choices]
                if bad:
                    raise KeyError_(
                        f"search_space.{name}.when.{parent}",
                        f"{bad[0]!r} is not one of {parent}'s choices {pp.choices!r}",
                    )
    from hpo.spec._space import sampling_order

    sampling_order(space)  # raises on cycles
