"""Shared fixtures: study files in a temp dir and a throwaway PostgreSQL database."""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def write_study(tmp_path: Path) -> Callable[..., Path]:
    """Write a study file from a dict (defaults: a quadratic objective on SQLite in tmp_path)."""

    def write(overrides: dict[str, Any] | None = None, name: str = "study.yaml", raw: str | None = None) -> Path:
        path = tmp_path / name
        if raw is not None:
            path.write_text(raw)
            return path
        data: dict[str, Any] = {
            "name": "t",
            "storage": f"sqlite:///{tmp_path / 'db.sqlite'}",
            "direction": "minimize",
            "sampler": {"type": "random", "seed": 0},
            "n_trials": 5,
            "trial": {"entrypoint": "hpo.tasks.synthetic:quadratic", "max_epochs": 3},
            # Threads keep loop tests fast; tests/hpo/test_pool.py covers worker processes.
            "executor": {"isolation": "thread"},
            "search_space": {"x": {"type": "float", "low": -5, "high": 5}},
        }
        for k, v in (overrides or {}).items():
            data[k] = v
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        return path

    return write


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database on 127.0.0.1:5432, dropped afterwards.

    Skipped when no server answers, unless HPO_REQUIRE_POSTGRES=1 (CI), where it fails.
    """
    sa = pytest.importorskip("sqlalchemy")
    admin_url = os.environ.get("HPO_PG_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    name = "hpo_test_" + secrets.token_hex(6)
    try:
        admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as c:
            c.exec_driver_sql(f"CREATE DATABASE {name}")
    except Exception as e:  # noqa: BLE001
        if os.environ.get("HPO_REQUIRE_POSTGRES") == "1":
            raise
        pytest.skip(f"PostgreSQL not reachable: {e}")
    yield admin_url.rsplit("/", 1)[0] + "/" + name
    with admin.connect() as c:
        c.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    admin.dispose()
