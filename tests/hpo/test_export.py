"""`hpo export` / `hpo import`: a study moves between databases without losing anything."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState, create_trial

from hpo.cli import main
from hpo.report import export_study, import_study

DISTS = {
    "lr": FloatDistribution(1e-5, 1.0, log=True),
    "dropout": FloatDistribution(0.0, 0.5, step=0.1),
    "hidden": IntDistribution(16, 256, step=16),
    "layers": IntDistribution(1, 64, log=True),
    "act": CategoricalDistribution(["relu", None, True, 0.5]),
}


def _rich_study(url: str, name: str = "rich") -> optuna.Study:
    """Every kind of thing a study stores: each state, odd values, attributes, a queued trial."""
    study = optuna.create_study(study_name=name, storage=url, direction="maximize")
    study.set_metric_names(["val_accuracy"])
    study.set_user_attr("hpo:spec", {"name": name, "search_space": {"lr": {"type": "float", "log": True}}})
    study.set_user_attr("owner", "ada")
    params = [
        {"lr": 1e-3, "dropout": 0.2, "hidden": 64, "layers": 2, "act": "relu"},
        {"lr": 0.31, "dropout": 0.0, "hidden": 256, "layers": 64, "act": None},
        {"lr": 1e-5, "dropout": 0.5, "hidden": 16, "layers": 1, "act": True},
        {"lr": 2.5e-2, "dropout": 0.1, "hidden": 128, "layers": 7, "act": 0.5},
    ]
    study.add_trials(
        [
            create_trial(
                value=0.912345678901234,
                params=params[0],
                distributions=DISTS,
                intermediate_values={1: 0.5, 2: 0.75, 3: 0.912345678901234},
                user_attrs={"hpo:metrics": {"samples_per_s": 1234.5}},
                system_attrs={"failed_trial": 0},
            ),
            create_trial(
                state=TrialState.PRUNED,
                value=0.1,
                params=params[1],
                distributions=DISTS,
                intermediate_values={1: float("nan"), 2: float("-inf"), 5: 0.1},
                user_attrs={"hpo:error": "pruned at step 5"},
            ),
            create_trial(
                state=TrialState.FAIL, params=params[2], distributions=DISTS, user_attrs={"hpo:error": "boom"}
            ),
            create_trial(value=float("inf"), params=params[3], distributions=DISTS),
        ]
    )
    study.enqueue_trial({"lr": 0.01, "hidden": 32})
    return study


def _canonical(path: Path, drop_name: bool = False) -> str:
    data = json.loads(path.read_text())
    if drop_name:
        data.pop("study_name")
        data["user_attrs"]["hpo:spec"].pop("name")
    return json.dumps(data, sort_keys=True)  # NaN compares equal as text


@pytest.fixture
def pg_url(postgres_url: str) -> Iterator[str]:
    """The shared test database, with the study this module imports into it removed afterwards."""
    yield postgres_url
    if "rich" in optuna.study.get_all_study_names(storage=postgres_url):
        optuna.delete_study(study_name="rich", storage=postgres_url)


def test_sqlite_to_postgres_to_json_is_lossless(tmp_path, pg_url, capsys) -> None:
    postgres_url = pg_url
    sqlite = f"sqlite:///{tmp_path / 'a.db'}"
    _rich_study(sqlite)
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    assert main(["export", "rich", "--storage", sqlite, str(a)]) == 0
    assert main(["import", str(a), "--storage", postgres_url]) == 0
    assert "imported study 'rich': 5 trials" in capsys.readouterr().out
    assert main(["export", "rich", "--storage", postgres_url, str(b)]) == 0
    assert _canonical(a) == _canonical(b)

    moved = optuna.load_study(study_name="rich", storage=postgres_url)
    src = optuna.load_study(study_name="rich", storage=sqlite)
    assert moved.directions == src.directions and moved.metric_names == ["val_accuracy"]
    assert moved.user_attrs == src.user_attrs
    for t, u in zip(src.trials, moved.trials):
        assert (t.number, t.state, t.params, t.distributions) == (
            u.number,
            u.state,
            u.params,
            u.distributions,
        )
        assert (t.datetime_start, t.datetime_complete) == (u.datetime_start, u.datetime_complete)
        assert t.values == u.values and t.user_attrs == u.user_attrs and t.system_attrs == u.system_attrs
    assert moved.trials[0].intermediate_values == {1: 0.5, 2: 0.75, 3: 0.912345678901234}
    assert moved.trials[4].state == TrialState.WAITING


def test_sqlite_to_sqlite_under_a_new_name(tmp_path, capsys) -> None:
    src, dst = f"sqlite:///{tmp_path / 'a.db'}", f"sqlite:///{tmp_path / 'b.db'}"
    _rich_study(src)
    a, b = tmp_path / "a.json", tmp_path / "new" / "dir" / "b.json"  # its directory is made
    assert main(["export", "rich", "--storage", src, str(a)]) == 0
    assert main(["import", str(a), "--storage", dst, "--study", "copy"]) == 0
    assert main(["export", "copy", "--storage", dst, str(b)]) == 0
    assert _canonical(a, drop_name=True) == _canonical(b, drop_name=True)
    assert json.loads(b.read_text())["study_name"] == "copy"
    assert json.loads(b.read_text())["user_attrs"]["hpo:spec"]["name"] == "copy"  # the spec renamed too
    assert [p.name for p in b.parent.iterdir()] == ["b.json"]  # written whole, then renamed


def test_export_writes_through_a_link_and_refuses_a_directory_cleanly(tmp_path, capsys) -> None:
    src = f"sqlite:///{tmp_path / 'a.db'}"
    _rich_study(src)
    target, link = tmp_path / "target.json", tmp_path / "link.json"
    target.write_text("old")
    link.symlink_to(target)
    assert main(["export", "rich", "--storage", src, str(link)]) == 0
    assert link.is_symlink() and json.loads(target.read_text())["study_name"] == "rich"
    assert main(["export", "rich", "--storage", src, str(tmp_path)]) == 2
    assert f"cannot write {tmp_path}" in capsys.readouterr().err
    assert not list(tmp_path.glob("*.part"))


def test_multi_objective_directions_survive(tmp_path) -> None:
    src, dst = f"sqlite:///{tmp_path / 'a.db'}", f"sqlite:///{tmp_path / 'b.db'}"
    study = optuna.create_study(study_name="mo", storage=src, directions=["minimize", "maximize"])
    study.set_metric_names(["loss", "speed"])
    study.add_trial(create_trial(values=[0.3, 120.0], params={"lr": 0.1}, distributions={"lr": DISTS["lr"]}))
    import_study(export_study("mo", src), dst)
    moved = optuna.load_study(study_name="mo", storage=dst)
    assert [d.name for d in moved.directions] == ["MINIMIZE", "MAXIMIZE"]
    assert moved.metric_names == ["loss", "speed"] and moved.trials[0].values == [0.3, 120.0]


def test_running_trial_is_imported_as_fail_and_queued_again(tmp_path) -> None:
    src, dst, again = (f"sqlite:///{tmp_path / n}.db" for n in ("a", "b", "c"))
    study = optuna.create_study(study_name="r", storage=src)
    study.add_trial(create_trial(value=1.0, params={"lr": 0.1}, distributions={"lr": DISTS["lr"]}))
    running = study.ask({"lr": DISTS["lr"]})
    running.report(0.7, 1)
    archive = export_study("r", src)
    assert archive["trials"][1]["state"] == "RUNNING"

    import_study(archive, dst)
    trials = optuna.load_study(study_name="r", storage=dst).trials
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.FAIL, TrialState.WAITING]
    assert "RUNNING when its study was exported" in trials[1].user_attrs["hpo:error"]
    assert trials[1].intermediate_values == {1: 0.7} and trials[1].datetime_complete is not None
    assert trials[2].params == trials[1].params and trials[2].system_attrs["failed_trial"] == 1
    assert trials[2].system_attrs["hpo:continues"] == {"trial": 1, "reason": "running when exported"}

    import_study(export_study("r", dst), again)  # a FAIL stays a FAIL: no second retry
    assert len(optuna.load_study(study_name="r", storage=again).trials) == 3


def test_a_running_trial_exported_with_its_continuation_is_not_continued_twice(tmp_path) -> None:
    """Exported between queuing its continuation and failing it (or after a crash there)."""
    from hpo.execution import enqueue_continuation

    src, dst = (f"sqlite:///{tmp_path / n}.db" for n in ("a", "b"))
    study = optuna.create_study(study_name="r", storage=src)
    running = study.ask({"lr": DISTS["lr"]})
    enqueue_continuation(study, study.trials[running.number], reason="error", max_attempts=None)
    import_study(export_study("r", src), dst)
    trials = optuna.load_study(study_name="r", storage=dst).trials
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.WAITING]
    assert trials[1].system_attrs["hpo:continues"] == {"trial": 0, "reason": "error"}


def test_existing_study_is_refused_and_kept(tmp_path, capsys) -> None:
    url = f"sqlite:///{tmp_path / 'a.db'}"
    _rich_study(url)
    archive = tmp_path / "a.json"
    assert main(["export", "rich", "--storage", url, str(archive)]) == 0
    assert main(["import", str(archive), "--storage", url]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["import", str(archive), "--storage", url, "--study", "bad name!"]) == 2
    assert "study name must be" in capsys.readouterr().err
    assert [s.study_name for s in optuna.get_all_study_summaries(url)] == ["rich"]
    assert len(optuna.load_study(study_name="rich", storage=url).trials) == 5


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not valid JSON"),
        ('{"format": "something-else"}', "not an hpo study archive"),
        ('{"format": "hpo-study", "version": 99}', "archive version 99 is not supported"),
    ],
)
def test_bad_archive_is_exit_2(tmp_path, capsys, content, message) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)
    assert main(["import", str(path), "--storage", f"sqlite:///{tmp_path / 'x.db'}"]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("params", {"hidden": 1000}, "trial 2"),  # outside IntDistribution(16, 256): caught before writing
        ("datetime_complete", None, "invalid trial"),  # a FAIL without an end: refused by Optuna mid-import
        ("number", "x", "trial x: invalid literal"),
        ("system_attrs", {"hpo:continues": {"trial": "zero"}}, "hpo:continues must be"),
        ("user_attrs", {"hpo:checkpoint": {"step": 2}}, "hpo:checkpoint must be"),
    ],
)
def test_invalid_trial_leaves_no_study_behind(tmp_path, capsys, field, value, message) -> None:
    src, dst = f"sqlite:///{tmp_path / 'a.db'}", f"sqlite:///{tmp_path / 'b.db'}"
    _rich_study(src)
    archive = export_study("rich", src)
    trial = archive["trials"][2]
    trial[field] = {**trial[field], **value} if isinstance(value, dict) else value
    path = tmp_path / "a.json"
    path.write_text(json.dumps(archive))
    assert main(["import", str(path), "--storage", dst]) == 2
    assert message in capsys.readouterr().err
    assert optuna.study.get_all_study_names(storage=dst) == []


def test_export_of_unknown_study_is_exit_1(tmp_path, capsys) -> None:
    url = f"sqlite:///{tmp_path / 'a.db'}"
    _rich_study(url)
    assert main(["export", "nope", "--storage", url, str(tmp_path / "x.json")]) == 1
    err = capsys.readouterr().err
    assert "no study 'nope'" in err and "rich" in err
    assert not (tmp_path / "x.json").exists()
