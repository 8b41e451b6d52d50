"""Turning a search space into Optuna ``suggest_*`` calls, conditional parameters included."""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any, Mapping

if TYPE_CHECKING:
    import optuna

    from hpo.spec._model import Param

__all__ = ["apply_engine_params", "grid_search_space", "sample_params", "sampling_order"]


def sampling_order(space: Mapping[str, Param]) -> list[str]:
    """Parameter names ordered so that every parameter comes after those its ``when`` names.

    Raises:
        ValueError: The conditions form a cycle.
    """
    from hpo.spec._model import KeyError_

    order: list[str] = []
    state: dict[str, int] = {}  # 1 = visiting, 2 = done

    def visit(name: str, path: list[str]) -> None:
        if state.get(name) == 2:
            return
        if state.get(name) == 1:
            cycle = " -> ".join(path[path.index(name) :] + [name])
            raise KeyError_(f"search_space.{name}.when", f"conditions form a cycle: {cycle}")
        state[name] = 1
        for parent in space[name].condition_values():
            if parent in space:
                visit(parent, path + [name])
        state[name] = 2
        order.append(name)

    for name in space:
        visit(name, [])
    return order


def is_active(param: Param, values: Mapping[str, Any]) -> bool:
    """Whether ``param``'s conditions hold for the values sampled so far."""
    for parent, accepted in param.condition_values().items():
        if parent not in values or values[parent] not in accepted:
            return False
    return True


def sample_params(trial: optuna.Trial, space: Mapping[str, Param]) -> dict[str, Any]:
    """Suggest every active parameter of ``space`` on ``trial``, parents first."""
    values: dict[str, Any] = {}
    for name in sampling_order(space):
        p = space[name]
        if not is_active(p, values):
            continue
        if p.type == "float":
            values[name] = trial.suggest_float(name, p.low, p.high, log=p.log, step=p.step)
        elif p.type == "int":
            values[name] = trial.suggest_int(name, p.low, p.high, step=p.step, log=p.log)
        else:
            values[name] = trial.suggest_categorical(name, p.choices)
    return values


def grid_search_space(space: Mapping[str, Param]) -> dict[str, list[Any]]:
    """The finite grid Optuna's ``GridSampler`` needs.

    Raises:
        ValueError: A float parameter has no ``step`` (it has no finite grid).
    """
    from hpo.spec._model import KeyError_

    grid: dict[str, list[Any]] = {}
    for name, p in space.items():
        if p.type == "categorical":
            grid[name] = list(p.choices)
        elif p.type == "int":
            grid[name] = list(range(p.low, p.high + 1, p.step))
        elif p.step is not None:
            n = int(round((p.high - p.low) / p.step))
            grid[name] = [round(p.low + i * p.step, 12) for i in range(n + 1)]
        else:
            raise KeyError_(
                f"search_space.{name}",
                "the grid sampler needs a step for float parameters",
            )
    return grid


def apply_engine_params(engine: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """The engine config with every ``engine.a.b`` parameter written at key path ``a.b``."""
    cfg = copy.deepcopy(engine)
    for name, value in params.items():
        if not name.startswith("engine."):
            continue
        *parents, leaf = name.split(".")[1:]
        node = cfg
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return cfg
