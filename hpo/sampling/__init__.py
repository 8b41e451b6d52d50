"""Samplers: the study file's ``sampler:`` section mapped onto Optuna's samplers."""

from __future__ import annotations

from hpo.sampling._factory import create_sampler

__all__ = ["create_sampler"]
