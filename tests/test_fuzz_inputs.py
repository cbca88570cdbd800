"""Fuzzing the inputs people hand the project (issue 15): configs, case files, vector files and
report files, made by hypothesis. Each must give either a valid result or one clean error of the
documented type, never another exception. The budget here is small (CI); a longer run for
maintainers: ``HYPOTHESIS_PROFILE=thorough python -m pytest tests/test_fuzz_inputs.py`` (profiles
in tests/conftest.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adamw_ref import AdamWConfig, AdamWRefError
from adamw_ref.cli import main as ref_main

#: tmp_path is reused across examples: each example overwrites its files first.
FIXTURES_OK = settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**30), 10**30),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12),
)
JSON = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
FIELDS = [
    "lr",
    "beta1",
    "beta2",
    "eps",
    "weight_decay",
    "eps_root",
    "amsgrad",
    "maximize",
    "nesterov",
    "eps_placement",
    "decay_scaling",
    "decay_form",
    "decay_timing",
    "bias_correction",
    "amsgrad_mode",
    "schedule_count",
    "step_count_scope",
    "bias_correction_offset",
    "groups",
    "lr_schedule",
    "wd_schedule",
    "learning_rate",
]
CONFIG = st.dictionaries(st.sampled_from(FIELDS), JSON, max_size=6)


@given(CONFIG)
def test_config_json_gives_a_config_or_a_config_error(doc: dict[str, Any]) -> None:
    try:
        cfg = AdamWConfig.from_json(doc)
    except AdamWRefError as exc:
        assert "\n" not in str(exc)
    else:
        assert AdamWConfig.from_json(cfg.to_json()) == cfg  # a valid one round-trips


VECTOR = st.lists(st.one_of(st.floats(), st.text(max_size=6), st.integers(-5, 5)), max_size=3)
CASE = st.fixed_dictionaries(
    {"format": st.sampled_from(["adamw-ref/case", "x"]), "version": st.sampled_from([1, 2, "1"])},
    optional={
        "params": st.dictionaries(st.sampled_from(["w", "b"]), VECTOR, max_size=2),
        "grads": st.lists(
            st.dictionaries(st.sampled_from(["w", "b"]), st.one_of(st.none(), VECTOR), max_size=2), max_size=3
        ),
        "profile": st.sampled_from(["torch", "keras3", "nope"]),
        "arithmetic": st.sampled_from(["float64", "float32", "decimal:30", "decimal:5", "bf16"]),
        "config": CONFIG,
    },
)


@FIXTURES_OK
@given(st.one_of(CASE, JSON))
def test_case_files_give_a_trajectory_or_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], doc: Any
) -> None:
    path = tmp_path / "case.json"
    path.write_text(json.dumps(doc, allow_nan=True))
    code = ref_main(["run", str(path), "-o", str(tmp_path / "out.json")])
    err = capsys.readouterr().err
    assert code in (0, 2), err
    if code == 2:
        assert err.count("\n") == 1 and "Traceback" not in err


@FIXTURES_OK
@given(st.binary(max_size=200))
def test_case_file_bytes(tmp_path: Path, capsys: pytest.CaptureFixture[str], data: bytes) -> None:
    path = tmp_path / "case.json"
    path.write_bytes(data)
    assert ref_main(["run", str(path)]) in (0, 2)
    capsys.readouterr()


@FIXTURES_OK
@given(st.one_of(JSON, st.binary(max_size=200)))
def test_vector_files_give_a_document_or_one_clean_error(tmp_path: Path, doc: Any) -> None:
    pytest.importorskip("numpy")
    from conformance.vectors import VectorFileError, read_vector_file

    path = tmp_path / "v.json"
    path.write_bytes(doc if isinstance(doc, bytes) else json.dumps(doc).encode())
    try:
        read_vector_file(path)
    except VectorFileError as exc:
        assert "\n" not in str(exc) and "v.json" in str(exc)


@FIXTURES_OK
@given(
    st.one_of(
        JSON,
        st.fixed_dictionaries(
            {
                "schema": st.just("adamw-conformance/report"),
                "schema_version": st.sampled_from(["1.0", "1.1", "2.0"]),
                "envelope": JSON,
                "cases": st.lists(JSON, max_size=3),
            }
        ),
    )
)
def test_report_files_give_a_report_or_a_value_error(tmp_path: Path, doc: Any) -> None:
    from conformance.report import schema as rp
    from conformance.report.terminal import summary_lines

    path = tmp_path / "report.json"
    path.write_text(json.dumps(doc))
    try:
        report = rp.load(path)
    except ValueError as exc:
        assert "\n" not in str(exc)
        return
    summary_lines(report, 80)  # a loadable report always renders
