"""Pruners: the study file's ``pruner:`` section mapped onto Optuna's pruners."""

from __future__ import annotations

from hpo.pruning._factory import create_pruner

__all__ = ["create_pruner"]
