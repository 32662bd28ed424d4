"""Audit configs and run_audit: the schema, safe artifact reading, stages, resumable units."""

from __future__ import annotations

import io
import json
import pickle  # noqa: TID251  (only to write a pickle that must be refused)
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from audit_configs import digits_config, signals_config
from membership_planted import planted

from privaudit.attacks.membership import (
    STAGES,
    AuditConfig,
    check_audit_artifacts,
    load_audit_config,
    parse_audit_config,
    read_npz,
    run_audit,
)
from privaudit.errors import (
    ConfigurationError,
    DataError,
    LimitExceededError,
    ParameterError,
    UnsupportedFormatError,
)
from privaudit.reports import load_report


def train_config(**overrides: Any) -> dict[str, Any]:
    return digits_config(**{"reference_models": 3, "trees": 8, "seed": 7, **overrides})


@pytest.fixture
def signals_file(tmp_path: Path) -> Path:
    data = planted(n=1000, n_reference=16, seed=3)
    path = tmp_path / "signals.npz"
    np.savez(path, signals=data.signals, keep=data.keep, labels=data.labels)
    return path


# --- the schema ------------------------------------------------------------------------


def test_defaults_display_names_and_gates() -> None:
    config = parse_audit_config(
        signals_config(
            attacks=[
                "loss",
                {"attack": "lira", "params": {"online": False, "fixed_variance": True}},
                {"attack": "rmia", "name": "rmia-2", "params": {"gamma": 2}},
                "shadow",
            ],
            gates={"max_auc": 0.7, "max_epsilon": 2, "max_tpr_at_fpr": {"0.1%": 0.05}},
        )
    )
    names = [spec.display_name for spec in config.attacks]
    assert names == ["loss", "lira-offline-fixed-var", "rmia-2", "shadow"]
    assert config.seed == 0 and config.epsilon.delta == 1e-5 and config.n_reference is None
    labels = [gate.label for gate in config.gates.to_gates()]
    assert labels == ["max auc", "max epsilon_lower_bound", "max tpr_at_fpr(0.1%)"]
    assert config.report.formats == ["json", "html", "md"]
    assert parse_audit_config(train_config(reference_models=None)).n_reference == 16


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"version": 2}, "version: Input should be 1"),
        ({"surprise": 1}, "surprise: Extra inputs are not permitted"),
        ({"seed": "3"}, "seed: Input should be a valid integer"),
        ({"seed": 1.5}, "seed: Input should be a valid integer"),
        ({"attacks": []}, "attacks: List should have at least 1 item"),
        ({"attacks": ["magic"]}, "attacks.0.attack: Input should be 'loss'"),
        ({"attacks": [{"attack": "lira", "params": {"onlne": True}}]}, "takes the params"),
        ({"attacks": [{"attack": "rmia", "params": {"gamma": -1}}]}, "gamma must be"),
        ({"attacks": [{"attack": "shadow", "params": {"classifier": "rf"}}]}, "classifier object"),
        ({"attacks": ["lira", "lira"]}, "display names must be unique"),
        ({"reference_models": 0}, "reference_models: Input should be greater than or equal to 1"),
        ({"inputs": {"mode": "endpoint"}}, "does not match any of the expected tags"),
        ({"inputs": {"mode": "model"}}, "inputs.model.dataset: Field required"),
        ({"inputs": {"mode": "signals", "signals": "data/../x.npz"}}, "without '.', '..'"),
        ({"inputs": {"mode": "signals", "signals": "/abs.npz"}}, "should match pattern"),
        ({"epsilon": {"delta": "1e-5"}}, "YAML reads 1e-5 as text; write 1.0e-5"),
        ({"epsilon": {"threshold_selection": "bonferroni"}}, "thresholds are required"),
        ({"gates": {"max_tpr_at_fpr": {"5%": 0.1}}}, "TPRs at FPR 10%, 1%, 0.1%, 0%"),
        ({"gates": {"max_auc": 2}}, "max_auc: Input should be less than or equal to 1"),
        ({"gates": {"max_epsilon": float("nan")}}, "max_epsilon: Input should be a finite"),
        ({"attacks": [{"attack": "rmia", "params": {"gamma": float("inf")}}]}, "finite"),
        ({"report": {"formats": ["pdf"]}}, "unknown report format 'pdf'"),
    ],
)
def test_bad_configs_name_the_field_at_fault(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ParameterError) as caught:
        parse_audit_config(signals_config(**change))
    assert message in caught.value.message, caught.value.message
    assert "not a valid audit config (version 1)" in caught.value.message


def test_recipes_are_checked_by_the_recipe_registry() -> None:
    def with_recipe(recipe: dict[str, Any]) -> dict[str, Any]:
        return train_config(inputs={**train_config()["inputs"], "recipe": recipe})

    forest = {"trainer": "sklearn", "estimator": "random_forest"}
    with pytest.raises(ParameterError, match="may not set 'n_jobs'"):
        parse_audit_config(with_recipe({**forest, "params": {"n_jobs": 4}}))
    with pytest.raises(ParameterError, match="bad params for random_forest"):
        parse_audit_config(with_recipe({**forest, "params": {"n_estimators": 0}}))
    with pytest.raises(
        ParameterError, match="unknown scikit-learn estimator 'random_forst' \\(did you mean"
    ):
        parse_audit_config(with_recipe({**forest, "estimator": "random_forst"}))
    with pytest.raises(ParameterError, match="a mapping with a 'trainer' key"):
        parse_audit_config(with_recipe({"estimator": "random_forest"}))
    with pytest.raises(ParameterError, match="mode train needs reference_models >= 2"):
        parse_audit_config(train_config(reference_models=1))
    default = parse_audit_config(train_config(inputs={"mode": "train", "dataset": {
        "builtin": "digits"}}))  # fmt: skip
    assert default.inputs.recipe == forest  # type: ignore[union-attr]


def test_the_config_round_trips_through_json_strictly() -> None:
    config = parse_audit_config(signals_config(gates={"max_tpr_at_fpr": {"1%": 0.2}}))
    again = AuditConfig.model_validate_json(config.model_dump_json(), strict=True)
    assert again == config
    schema = AuditConfig.model_json_schema()
    assert schema["additionalProperties"] is False and "version" in schema["required"]


def test_yaml_is_read_with_safe_load(tmp_path: Path) -> None:
    path = tmp_path / "audit.yaml"
    path.write_text(
        "version: 1\n"
        "inputs: {mode: signals, signals: data/signals.npz}\n"
        "attacks: [loss]\n"
        "epsilon: {delta: 1.0e-6}\n"
    )
    config = load_audit_config(path)
    assert config.epsilon.delta == 1e-6 and config.artifact_names() == ["data/signals.npz"]
    # A tag that only the unsafe loader would construct is refused, never run.
    path.write_text("version: !!python/object/apply:os.system ['true']\n")
    with pytest.raises(ConfigurationError, match="not valid YAML"):
        load_audit_config(path)
    path.write_text("- just\n- a list\n")
    with pytest.raises(ParameterError, match="must be a mapping"):
        load_audit_config(path)
    with pytest.raises(ConfigurationError, match="cannot read the audit config"):
        load_audit_config(tmp_path / "missing.yaml")


# --- artifacts ---------------------------------------------------------------------


def test_read_npz_refuses_pickle_objects_strangers_and_bombs(tmp_path: Path) -> None:
    pickled = tmp_path / "p.npz"
    pickled.write_bytes(pickle.dumps({"signals": np.zeros(3)}))
    with pytest.raises(UnsupportedFormatError, match="pickle") as caught:
        read_npz(pickled, required=("signals",))
    assert caught.value.details["format"] == "pickle"

    objects = tmp_path / "o.npz"
    np.savez(objects, signals=np.array([{"a": 1}], dtype=object))
    with pytest.raises(UnsupportedFormatError, match="only pickle can hold"):
        read_npz(objects, required=("signals",))

    npy = tmp_path / "a.npy"
    np.save(npy, np.zeros(3))
    with pytest.raises(UnsupportedFormatError, match=r"single \.npy array"):
        read_npz(npy, required=("signals",))

    text = tmp_path / "t.npz"
    text.write_text("signals,keep\n1,0\n")
    with pytest.raises(UnsupportedFormatError, match="unrecognised file format"):
        read_npz(text, required=("signals",))

    extra = tmp_path / "e.npz"
    np.savez(extra, signals=np.zeros(3), sigals=np.zeros(3))
    with pytest.raises(DataError, match=r"unexpected \['sigals'\]"):
        read_npz(extra, required=("signals",))
    with pytest.raises(DataError, match=r"missing \['keep'\]"):
        read_npz(extra, required=("signals", "keep"), optional=("sigals",))

    # A small file that declares a huge array is refused from its header alone.
    bomb = tmp_path / "b.npz"
    np.savez_compressed(bomb, signals=np.zeros((2000, 1000)))
    assert bomb.stat().st_size < 100_000
    with pytest.raises(LimitExceededError, match="more than 1000000 bytes"):
        read_npz(bomb, required=("signals",), max_array_bytes=1_000_000)

    stray = tmp_path / "s.npz"
    with zipfile.ZipFile(stray, "w") as archive:
        archive.writestr("signals.npy", _npy(np.zeros(2)))
        archive.writestr("run.py", "print('hi')")
    with pytest.raises(DataError, match=r"'run\.py', which is not an array"):
        read_npz(stray, required=("signals",))


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def test_artifacts_are_checked_against_the_config(signals_file: Path, tmp_path: Path) -> None:
    config = parse_audit_config(signals_config(reference_models=16))
    inputs = check_audit_artifacts(config, {"signals.npz": signals_file})
    assert inputs.summary() == {"reference_models": 16, "examples": 1000, "queries": 1}
    assert inputs.artifacts[0].name == "signals.npz" and len(inputs.artifacts[0].sha256) == 64

    with pytest.raises(DataError, match=r"reference_models: 5, but 'signals\.npz' holds"):
        check_audit_artifacts(
            parse_audit_config(signals_config(reference_models=5)), {"signals.npz": signals_file}
        )
    with pytest.raises(DataError, match=r"missing \['signals.npz'\]"):
        check_audit_artifacts(config, {})
    with pytest.raises(DataError, match=r"not named by the config: \['other.npz'\]"):
        check_audit_artifacts(config, {"signals.npz": signals_file, "other.npz": signals_file})
    with pytest.raises(LimitExceededError, match="1000 examples; the limit is 100"):
        check_audit_artifacts(config, {"signals.npz": signals_file}, max_examples=100)

    data = planted(n=50, n_reference=1, seed=1)
    small = tmp_path / "small.npz"
    np.savez(small, signals=data.signals, keep=data.keep)  # no labels
    small_config = parse_audit_config(
        signals_config(inputs={"mode": "signals", "signals": "small.npz"}, attacks=["shadow"])
    )
    with pytest.raises(DataError, match="must hold labels"):
        check_audit_artifacts(small_config, {"small.npz": small})
    auto = parse_audit_config(
        signals_config(
            inputs={"mode": "signals", "signals": "small.npz"},
            attacks=[{"attack": "rmia", "params": {"online": False}}],
        )
    )
    with pytest.raises(DataError, match="needs at least 2 reference models"):
        check_audit_artifacts(auto, {"small.npz": small})

    shapes = tmp_path / "shapes.npz"
    np.savez(shapes, signals=data.signals, keep=data.keep[:, :10], labels=data.labels)
    with pytest.raises(DataError, match=r"artifact 'small.npz': keep must have shape"):
        check_audit_artifacts(
            parse_audit_config(
                signals_config(inputs={"mode": "signals", "signals": "small.npz"}, attacks=["loss"])
            ),
            {"small.npz": shapes},
        )


# --- running -------------------------------------------------------------------------


def test_a_signals_audit_runs_every_stage_and_writes_its_report(
    signals_file: Path, tmp_path: Path
) -> None:
    config = parse_audit_config(signals_config(gates={"max_auc": 0.99}))
    seen: list[tuple[str, int, int | None]] = []
    outcome = run_audit(
        config,
        artifacts={"signals.npz": signals_file},
        out_dir=tmp_path / "out",
        on_progress=lambda stage, done, total: seen.append((stage, done, total)),
    )
    stages = list(dict.fromkeys(stage for stage, _, _ in seen))
    assert stages == [s for s in STAGES if s not in ("train models", "compute signals")]
    assert ("run attacks", 3, 3) in seen and seen[-1] == ("render report", 3, 3)
    assert outcome.n_models == outcome.trained == outcome.skipped == 0
    report = load_report(outcome.files["json"])
    assert [a.name for a in report.attacks] == ["loss", "lira-online", "rmia-offline"]
    assert report.verdict.status == "pass" and report.config["seed"] == 0
    assert report.inputs.artifacts[0].name == "signals.npz"
    # The planted effect is found: LiRA beats LOSS. Over 20 seeds of this setting the
    # AUC gap was 0.075 ± 0.015 (mean ± sd), so a gap <= 0 has a chance below 1e-6.
    aucs = {a.name: a.metrics.auc for a in report.attacks}
    assert aucs["lira-online"] > aucs["loss"]
    assert set(outcome.to_dict()) >= {"verdict", "models", "seconds", "epsilon", "attacks"}


def _marker_times(units: Path) -> dict[str, int]:
    return {path.name: path.stat().st_mtime_ns for path in sorted(units.glob("*.done"))}


def test_trained_models_are_resumable_units(tmp_path: Path) -> None:
    config = parse_audit_config(train_config(epsilon={"estimate": False}))
    work = tmp_path / "work"
    seen: list[tuple[str, int, int | None]] = []
    first = run_audit(config, work_dir=work, on_progress=lambda s, d, t: seen.append((s, d, t)))
    assert (first.n_models, first.trained, first.skipped) == (4, 4, 0)
    assert [entry for entry in seen if entry[0] == "train models"] == [
        ("train models", done, 4) for done in range(5)
    ]
    units = work / "units"
    markers = _marker_times(units)
    assert len(markers) == 4
    plan = json.loads((units / "plan.json").read_text())
    assert plan["n_models"] == 4 and plan["seed"] == 7

    # Lose two units the way a crash would: one never finished (no marker), one whose
    # output was damaged after its marker was written.
    (units / "unit-00002.done").unlink()
    (units / "unit-00003.npy").write_bytes(b"damaged")
    second = run_audit(config, work_dir=work)
    assert (second.trained, second.skipped) == (2, 2)
    after = _marker_times(units)
    assert {name: after[name] for name in ("unit-00000.done", "unit-00001.done")} == {
        name: markers[name] for name in ("unit-00000.done", "unit-00001.done")
    }
    assert "2 trained in this run, 2 reused" in second.report.notes[0]
    # Same seed, same figures: reused and retrained models give the uninterrupted result.
    fresh = run_audit(config)
    for ours, theirs in zip(second.report.attacks, fresh.report.attacks, strict=True):
        assert ours.metrics == theirs.metrics

    # Another plan (another seed) trusts none of these units.
    other = run_audit(
        parse_audit_config(train_config(seed=8, epsilon={"estimate": False})), work_dir=work
    )
    assert (other.trained, other.skipped) == (4, 0)
