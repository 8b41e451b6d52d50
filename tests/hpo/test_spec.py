"""Study files: valid shapes load typed; every kind of bad input is one clear SpecError."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import hpo
from hpo.spec import CategoricalParam, FloatParam, IntParam, load_spec

REPO = Path(__file__).resolve().parents[2]


def test_quickstart_loads_typed_with_include_merged() -> None:
    spec = load_spec(REPO / "studies" / "quickstart.yaml")
    assert spec.name == "quickstart"
    assert spec.metric_names == ["val_accuracy"]
    assert [d.value for d in spec.study_directions] == ["maximize"]
    assert isinstance(spec.search_space["hidden"], IntParam) and spec.search_space["hidden"].step == 16
    assert isinstance(spec.search_space["lr"], FloatParam) and spec.search_space["lr"].log
    assert isinstance(spec.search_space["activation"], CategoricalParam)
    assert "weight_decay" in spec.search_space  # from search_spaces/adamw.yaml


def test_every_example_study_validates() -> None:
    for path in sorted((REPO / "studies").glob("*.yaml")):
        assert load_spec(path).name


def test_study_value_overrides_included_one(write_study) -> None:
    path = write_study(
        {"search_space": {"include": ["adamw"], "lr": {"type": "float", "low": 0.5, "high": 0.6}}}
    )
    spec = load_spec(path)
    assert spec.search_space["lr"].low == 0.5
    assert spec.search_space["weight_decay"].log


def test_conditional_parameter_is_expressible(write_study) -> None:
    spec = load_spec(write_study({"search_space": {"include": ["optimizers"]}}))
    assert spec.search_space["momentum"].condition_values() == {"optimizer": ["SGD"]}


BAD = [
    ({"nmae": "x"}, "nmae", "did you mean 'name'"),
    ({"n_trials": "many"}, "n_trials", "'many'"),
    ({"search_space": {"x": {"type": "float", "low": 3, "high": 1}}}, "search_space.x.low", "low=3.0, high=1.0"),
    ({"search_space": {"x": {"type": "float", "low": 0, "high": 1, "log": True}}}, "search_space.x.low", "low > 0"),
    ({"search_space": {"x": {"type": "categorical", "choices": []}}}, "search_space.x.choices", "must not be empty"),
    ({"search_space": {"x": {"type": "flaot", "low": 0, "high": 1}}}, "search_space.x.type", "'flaot'"),
    ({"search_space": {"x": {"type": "float", "low": 0, "high": 1, "logg": True}}}, "search_space.x.logg", "did you mean 'log'"),
    ({"sampler": {"type": "tpee"}}, "sampler.type", "did you mean 'tpe'"),
    ({"sampler": {"type": "tpe", "n_startup": 3}}, "sampler.n_startup", "did you mean 'n_startup_trials'"),
    ({"pruner": {"type": "median", "n_warmup": 3}}, "pruner.n_warmup", "did you mean 'n_warmup_steps'"),
    ({"trial": {"entrypoint": "no_such_module_xyz:train"}}, "trial.entrypoint", "cannot import 'no_such_module_xyz'"),
    ({"trial": {"entrypoint": "hpo.tasks.synthetic:nope"}}, "trial.entrypoint", "no function 'nope'"),
    ({"trial": {"entrypoint": "os.system('rm -rf /')"}}, "trial.entrypoint", "package.module:function"),
    ({"name": "../../etc/passwd"}, "name", "'../../etc/passwd'"),
    ({"search_space": {"m": {"type": "float", "low": 0, "high": 1, "when": {"opt": "sgd"}}}}, "search_space.m.when", "unknown parameter 'opt'"),
    ({"search_space": {"o": {"type": "categorical", "choices": ["a"]}, "m": {"type": "int", "low": 0, "high": 1, "when": {"o": "b"}}}}, "search_space.m.when.o", "'b' is not one of"),
    ({"search_space": {"include": ["no_such_space"]}}, "search_space.include", "not found"),
    ({"search_space": {"include": ["../studies/quickstart"]}}, "search_space.include", "letters, digits"),
    ({"direction": "maximize", "directions": ["maximize"]}, "directions", "not both"),
    ({"direction": None, "directions": ["maximize", "minimize"]}, "metric", "1 metric(s)"),
    ({"concurrency": 0}, "concurrency", "greater than or equal to 1"),
    ({"search_space": {"engine.precision": {"type": "categorical", "choices": ["fp32", "fp99"]}}},
     "search_space.engine.precision", "'fp99' is not a precision"),
    ({"search_space": {"engine.zero_optimization.stag": {"type": "int", "low": 0, "high": 3}}},
     "search_space.engine.zero_optimization.stag", "did you mean 'stage'"),
    ({"sampler": {"type": "tpe", "multivariate": "maybe"}}, "sampler.multivariate", "must be a boolean or null"),
    ({"pruner": {"type": "median", "n_warmup_steps": True}}, "pruner.n_warmup_steps", "must be an integer"),
    ({"executor": {"isolation": "process"}, "trial": {"entrypoint": "__main__:train"}}, "trial.entrypoint",
     "function of the running script"),
    ({"n_trials": True}, "n_trials", "not the boolean true"),
    ({"timeout": True}, "timeout", "not the boolean true"),
    ({"trial": {"entrypoint": "hpo.tasks.synthetic:quadratic", "resources": {"workers": True}}}, "trial.resources.workers",
     "not the boolean true"),
    ({"executor": {"reuse_workers": "maybe"}}, "executor.reuse_workers", "valid boolean"),
    ({"storage": "foo"}, "storage", "not a database URL"),
    ({"storage": "sqlite://"}, "storage", "in-memory SQLite"),
    ({"storage": "bogus://host/db"}, "storage", "unknown database 'bogus'"),
    ({"direction": None, "directions": ["maximize", "minimize"], "metric": ["a", "b"], "pruner": {"type": "median"}},
     "pruner.type",
     "prunes on one objective"),
    ({"sampler": {"type": "grid"}}, "search_space.x", "needs a step"),
]


@pytest.mark.parametrize(("overrides", "key", "fragment"), BAD, ids=[b[1] + ":" + b[2][:20] for b in BAD])
def test_bad_input_names_file_key_and_value(write_study, overrides, key, fragment) -> None:
    path = write_study(overrides)
    with pytest.raises(hpo.SpecError) as info:
        load_spec(path)
    err = info.value
    assert err.key == key, str(err)
    assert fragment in str(err)
    assert str(err).startswith(str(path))


def test_error_carries_line_number(write_study) -> None:
    path = write_study(raw="name: t\ntrial:\n  entrypoint: hpo.tasks.synthetic:quadratic\nn_trails: 3\n")
    with pytest.raises(hpo.SpecError) as info:
        load_spec(path)
    assert info.value.line == 4
    assert f"{path}:4: n_trails: unknown key 'n_trails'; did you mean 'n_trials'?" == str(info.value)


def test_engine_parameters_are_checked_at_values_the_sampler_can_give(write_study) -> None:
    """``high`` off the step grid is never sampled: 8 and 16 divide the batch, 20 would not."""
    path = write_study({
        "trial": {"entrypoint": "hpo.tasks.synthetic:quadratic", "engine": {"train_batch_size": 32}},
        "search_space": {"engine.train_micro_batch_size_per_gpu": {"type": "int", "low": 8, "high": 20, "step": 8}},
    })
    assert "engine.train_micro_batch_size_per_gpu" in load_spec(path).search_space


def test_a_key_given_twice_is_refused_at_its_second_line(write_study) -> None:
    path = write_study(raw="name: t\nsearch_space:\n  x: {type: float, low: 0, high: 1}\n  x: {type: int, low: 0, high: 2}\n")
    with pytest.raises(hpo.SpecError) as info:
        load_spec(path)
    assert (info.value.key, info.value.line) == ("search_space.x", 4)
    assert "duplicate key 'x' (first at line 3)" in str(info.value)


def test_a_file_that_is_not_utf8_is_refused(write_study) -> None:
    path = write_study(raw="name: t\n")
    path.write_bytes(b"name: \xff\xfe\n")
    with pytest.raises(hpo.SpecError, match="not UTF-8 text"):
        load_spec(path)


@pytest.mark.parametrize(
    "raw",
    [
        "name: !!python/object/apply:os.system ['echo pwned']\n",
        "name: [unclosed\n",
        "- just\n- a list\n",
    ],
)
def test_unsafe_or_malformed_yaml_is_refused(write_study, raw) -> None:
    with pytest.raises(hpo.SpecError):
        load_spec(write_study(raw=raw))


def test_missing_file() -> None:
    with pytest.raises(hpo.SpecError, match="no_such.yaml: file not found"):
        load_spec("no_such.yaml")


def test_cli_bad_input_exits_2_without_traceback_and_without_touching_db(write_study, tmp_path) -> None:
    path = write_study({"search_space": {"x": {"type": "float", "low": 3, "high": 1}}})
    for cmd in ("validate", "optimize"):
        proc = subprocess.run(
            [sys.executable, "-m", "hpo.cli", cmd, str(path)], capture_output=True, text=True, cwd=tmp_path
        )
        assert proc.returncode == 2, proc.stderr
        assert "Traceback" not in proc.stderr
        assert "search_space.x.low" in proc.stderr
    assert not (tmp_path / "db.sqlite").exists()


def test_cli_validate_ok(tmp_path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "hpo.cli", "validate", str(REPO / "studies" / "quickstart.yaml")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert "ok" in proc.stdout and not list(tmp_path.iterdir())


def test_spec_from_dict_is_the_python_twin() -> None:
    spec = hpo.spec_from_dict(
        {"name": "p", "trial": {"entrypoint": "hpo.tasks.synthetic:quadratic"}, "search_space": {"x": {"type": "int", "low": 1, "high": 3}}}
    )
    assert spec.search_space["x"].high == 3
    with pytest.raises(hpo.SpecError, match="search_space.x.low"):
        hpo.spec_from_dict(
            {"name": "p", "trial": {"entrypoint": "hpo.tasks.synthetic:quadratic"}, "search_space": {"x": {"type": "int", "low": 5, "high": 3}}}
        )


def test_reading_a_study_file_for_its_results_skips_the_engine_check(write_study) -> None:
    path = write_study({"trial": {"entrypoint": "hpo.tasks.synthetic:quadratic", "engine": {"zero_optimisation": {}}}})
    with pytest.raises(hpo.SpecError, match="zero_optimisation"):
        load_spec(path)  # what `hpo optimize` and `hpo validate` do
    assert load_spec(path, check_entrypoint=False).name == "t"  # `hpo status`, `best`, `trials`
    with pytest.raises(hpo.SpecError, match="zero_optimisation"):
        load_spec(path, check_entrypoint=False, check_engine=True)  # `hpo submit`
    # Without the engine check, reading a study file does not import torch (~2 s).
    code = f"import sys; from hpo.spec import load_spec; load_spec({str(path)!r}, check_entrypoint=False); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_the_readme_study_file_validates(tmp_path) -> None:
    readme = (REPO / "README.md").read_text()
    block = readme.split("## A study file", 1)[1].split("```yaml\n", 1)[1].split("```", 1)[0]
    (tmp_path / "readme.yaml").write_text(block)
    spec = load_spec(tmp_path / "readme.yaml")
    assert spec.search_space["momentum"].condition_values() == {"optimizer": ["SGD"]}
