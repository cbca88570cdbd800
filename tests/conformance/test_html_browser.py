"""The HTML report as a reader meets it: opened in headless Chromium at 1400 x 900.

The headline and the implementation x dtype matrix are on the first screen, nothing is wider
than the window (also with every card and detail row open), table rows stay short, repro
commands wrap between words, and the filter, the status select, the matrix cells and the sort
work. Runs on a synthetic report (~300 cases: a long repro command, known findings, unexpected
divergences, an error, NaN/inf in every encoding) and on the committed CPU report.

Needs Playwright's Python package and a Chromium binary (Debian: ``apt-get install chromium``;
``ADAMW_CHROMIUM`` names another); skipped otherwise. Playwright never downloads a browser here.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("jinja2")
pytest.importorskip("matplotlib")
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")

from conformance.expectations import KNOWN_FINDINGS, mark_expected, read_entries  # noqa: E402
from conformance.report import outcome  # noqa: E402
from conformance.report.html import render_html  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
CPU_REPORT = ROOT / "docs" / "reports" / "cpu-2026-11-26" / "report.json"
WIDTH, HEIGHT = 1400, 900
MAX_ROW_PX = 120
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
LONG_REPRO = (
    "ADAMW_SEED=0 adamw-conformance run --adapter keras-tensorflow --implementation "
    "'keras.optimizers.AdamW[tensorflow] via Model.train_on_batch' --device cpu --dtype float64 "
    "--scenario warmup_cosine --mode teacher_forced --seeds 0 1 2 3 --steps 400 --closed-loop "
    "--known-findings /very/long/path/to/a/checkout/of/adamw-ref/conformance/expectations/known_findings.txt "
    "--out /tmp/adamw-repro/keras-tensorflow/default/float64/warmup_cosine/teacher_forced "
    "&& echo '<script>alert(1)</script> & done'"
)


def _chromium() -> str | None:
    for candidate in (os.environ.get("ADAMW_CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium")):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


# -- the synthetic report ---------------------------------------------------------------------

IMPLS = [
    ("torch", "foreach"),
    ("torch", "fused"),
    ("torch", "capturable"),  # skipped everywhere but bfloat16: the row must not read as skipped
    ("optax", "jit"),
    ("mlx", "default"),  # float64 diverges: a known finding
    ("keras-torch", "default"),  # float32 diverges unexpectedly, with NaN
    ("keras-tensorflow", "keras.optimizers.AdamW[tensorflow] via Model.train_on_batch (a long name)"),
    ("reference", "emulated"),
]
DTYPES = ["float64", "float32", "float16", "bfloat16"]
SCENARIOS = ["basic", "amsgrad", "warmup_cosine", "tiny_magnitudes", "frozen"]
MODES = ["free", "teacher_forced"]
KNOWN_ENTRY = "mlx[default]-cpu-float64-"
UNEXPECTED = {("basic", "free"), ("amsgrad", "free")}  # keras-torch float32
DETAIL = "no single knob explains the trajectory; hint: the errors are float32-sized. " * 3


def _verdict(adapter: str, impl: str, dtype: str, scenario: str, mode: str) -> tuple[str, str | None]:
    if impl == "capturable" and dtype != "bfloat16":
        return "skipped", "torch refuses capturable=True on CPU"
    if adapter == "mlx" and dtype == "float64":
        return "divergent", None
    if adapter == "keras-torch" and dtype == "float32" and (scenario, mode) in UNEXPECTED:
        return "divergent", None
    if adapter == "optax" and dtype == "bfloat16" and scenario == "frozen" and mode == "free":
        return "error", None
    if adapter == "reference":
        return "exact", None
    if adapter == "keras-tensorflow" and scenario == "warmup_cosine":
        return "acceptable", "forward_precision"
    return "within_bound", None


def synthetic_report() -> dict[str, Any]:
    cases: list[dict[str, Any]] = []
    for adapter, impl in IMPLS:
        for dtype in DTYPES:
            for scenario in SCENARIOS:
                for mode in MODES:
                    verdict, extra = _verdict(adapter, impl, dtype, scenario, mode)
                    cid = f"{adapter}[{impl}]-cpu-{dtype}-{scenario}-{mode}-s0"
                    bad = verdict == "divergent"
                    case: dict[str, Any] = {
                        "id": cid,
                        "adapter": adapter,
                        "implementation": impl,
                        "device": "cpu",
                        "dtype": dtype,
                        "scenario": scenario,
                        "mode": mode,
                        "profile": adapter,
                        "seed": 0,
                        "steps": 20,
                        "verdict": verdict,
                        "acceptable_flag": extra if verdict == "acceptable" else None,
                        "metrics": {
                            "w": {"max_abs": 1e-7, "max_rel": 1e-6, "max_ulp": 120.0 if bad else 3.5},
                            "b": {"max_abs": 2e-8, "max_rel": 3e-7, "max_ulp": 1.25},
                        },
                        "bound": {"kind": "ref_vs_impl", "max_ratio": 2.5e6 if bad else 0.04},
                        "first_divergence": None,
                        "diagnosis": None,
                        "error": extra if verdict == "skipped" else None,
                        "repro": f"adamw-conformance run --adapter {adapter} --scenario {scenario}",
                        "series": {
                            "step": list(range(1, 21)),
                            "err": [(2.5e6 if bad else 0.04) * (1 + 0.01 * i) for i in range(20)],
                        },
                        "duration_s": 0.05,
                    }
                    if bad:
                        case["first_divergence"] = {
                            "step": 1,
                            "param": "w",
                            "index": [3, 2],
                            "expected": -0.10662397820290392,
                            "got": -0.10662391144432048,
                            "abs_err": 6.675858343907493e-08,
                            "ulp": 4810462904.0,
                        }
                        case["diagnosis"] = {
                            "explained_by": None,
                            "kind": None,
                            "detail": DETAIL,
                            "candidates": [{"name": "decay_form=added_to_update", "score": 1986705.66}],
                        }
                    if verdict == "error":
                        case["error"] = "Traceback (most recent call last):\n" + "  File x, line 1\n" * 40
                        case["metrics"] = {}
                        case["series"] = {"step": [], "err": []}
                    if verdict == "exact":
                        case["metrics"]["w"]["max_ulp"] = 9.02 if dtype != "float64" else 0.0
                    cases.append(case)
    # the unexpected NaN divergence, in every encoding of a non-finite number
    nan_case = next(c for c in cases if c["id"] == "keras-torch[default]-cpu-float32-basic-free-s0")
    nan_case["metrics"]["w"] = {"max_abs": "nan", "max_rel": float("nan"), "max_ulp": 1.7976931348623157e308}
    nan_case["first_divergence"].update({"got": "nan", "abs_err": "inf", "ulp": float("inf")})
    nan_case["series"]["err"][5:8] = ["nan", float("inf"), 1.7976931348623157e308]
    nan_case["bound"]["max_ratio"] = "inf"
    nan_case["repro"] = LONG_REPRO
    mark_expected(cases, [KNOWN_ENTRY])
    return {
        "schema": "adamw-conformance/report",
        "schema_version": "1.1",
        "envelope": {
            "suite_version": "0.1.0",
            "spec_version": "1.0",
            "commit": "0" * 40,
            "created": "2026-11-23T11:07:02+00:00",
            "command": LONG_REPRO,
            "python": "3.11.7",
            "platform": "Linux-x86_64-" + "x" * 200,
            "frameworks": {"torch": "2.13.0+cpu", "mlx": "0.32.4", "keras": "3.15.1"},
            "devices": [{"kind": "cpu", "model": "Intel(R) Xeon(R)", "driver": None, "runtime": None}],
            "precision": {"tf32": {"torch_cuda_matmul": False}},
            "seeds": [0],
            "env": {},
        },
        "cases": cases,
    }


# -- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    exe = _chromium()
    if exe is None:
        pytest.skip("no Chromium binary (apt-get install chromium, or set ADAMW_CHROMIUM)")
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def pages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[dict[str, Any], Path]]:
    out: dict[str, tuple[dict[str, Any], Path]] = {}
    synthetic = synthetic_report()
    out["synthetic"] = (synthetic, render_html(synthetic, tmp_path_factory.mktemp("synthetic")))
    cpu = json.loads(CPU_REPORT.read_text(encoding="utf-8"))
    mark_expected(cpu["cases"], read_entries(str(KNOWN_FINDINGS)))
    out["cpu"] = (cpu, render_html(cpu, tmp_path_factory.mktemp("cpu")))
    return out


@pytest.fixture(params=["synthetic", "cpu"])
def opened(
    request: pytest.FixtureRequest, browser: Any, pages: dict[str, tuple[dict[str, Any], Path]]
) -> Iterator[tuple[dict[str, Any], Any, list[str]]]:
    report, path = pages[request.param]
    page = browser.new_page(viewport={"width": WIDTH, "height": HEIGHT})
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    page.on("console", lambda msg: problems.append(f"console: {msg.text}") if msg.type == "error" else None)
    page.on(
        "request",
        lambda req: None if req.url.startswith(("file:", "data:")) else problems.append(f"fetch: {req.url}"),
    )
    page.goto(path.as_uri())
    yield report, page, problems
    page.close()


# -- helpers ----------------------------------------------------------------------------------


def _shown(page: Any) -> tuple[int, int]:
    m = re.fullmatch(r"(\d+) of (\d+) cases shown", page.inner_text("#shown").strip())
    assert m, page.inner_text("#shown")
    visible = page.evaluate("document.querySelectorAll('#cases tbody.case:not([hidden])').length")
    assert int(m.group(1)) == visible
    return int(m.group(1)), int(m.group(2))


def _filter(page: Any, text: str, status: str = "all") -> int:
    page.select_option("#status-filter", status)
    page.fill("#q", text)
    return _shown(page)[0]


def _overflow(page: Any) -> int:
    return int(page.evaluate("document.documentElement.scrollWidth - window.innerWidth"))


# -- tests ------------------------------------------------------------------------------------


def test_first_screen_has_headline_and_matrix(opened: tuple[dict[str, Any], Any, list[str]]) -> None:
    report, page, problems = opened
    assert page.evaluate("window.scrollY") == 0
    headline = page.locator("#headline")
    assert headline.inner_text().strip() == outcome.headline(report)
    for sel in ("#headline", "#matrix"):
        box = page.locator(sel).bounding_box()
        assert box is not None and box["y"] >= 0 and box["y"] + box["height"] <= HEIGHT, (sel, box)
    m = outcome.matrix(report, "single")
    assert page.locator("#matrix tbody tr").count() == len(m.rows)
    first = page.locator("#matrix tbody tr").first.locator("button.cell").first
    assert first.inner_text().strip() == outcome.cell_text(m.cell(m.rows[0], m.columns[0]))
    # the distributed tier has its own matrix below the first screen
    d = outcome.matrix(report, "distributed")
    assert page.locator("#matrix-distributed tbody tr").count() == len(d.rows)
    assert not problems


def test_nothing_overflows_and_rows_are_short(opened: tuple[dict[str, Any], Any, list[str]]) -> None:
    report, page, problems = opened
    assert _overflow(page) <= 0
    heights = page.evaluate(
        "Array.from(document.querySelectorAll('#cases tr.main')).map(r => r.getBoundingClientRect().height)"
    )
    assert len(heights) == len(report["cases"])
    assert max(heights) < MAX_ROW_PX, max(heights)
    # every word of every repro command on one line; a command a few lines tall at most
    broken = page.evaluate(
        "Array.from(document.querySelectorAll('.cmd code .w'))"
        ".filter(w => w.getClientRects().length > 1).length"
    )
    assert broken == 0
    # open every card and every detail row: still nothing wider than the window
    page.evaluate(
        "document.querySelectorAll('details').forEach(d => d.open = true);"
        "document.querySelectorAll('#cases tr.more').forEach(r => r.hidden = false)"
    )
    assert _overflow(page) <= 0
    tall = page.evaluate(
        "Math.max(...Array.from(document.querySelectorAll('.cmd code'))"
        ".map(c => c.getBoundingClientRect().height))"
    )
    assert tall < MAX_ROW_PX, tall
    assert not problems


def test_filter_status_select_matrix_and_sort(opened: tuple[dict[str, Any], Any, list[str]]) -> None:
    report, page, problems = opened
    cases = report["cases"]
    n = len(cases)
    assert _shown(page) == (n, n)
    by_status: dict[str, int] = {}
    for c in cases:
        by_status[outcome.status(c)] = by_status.get(outcome.status(c), 0) + 1
    for status, count in by_status.items():
        assert _filter(page, status) == count, status  # typed
        assert _filter(page, "", status) == count, status  # selected
    assert _filter(page, "", "attention") == len(outcome.not_passing(report))
    assert _filter(page, "tiny_magnitudes") == sum("tiny_magnitudes" in c["id"] for c in cases)
    assert _filter(page, "tiny_magnitudes known") == sum(
        "tiny_magnitudes" in c["id"] and outcome.status(c) == "known" for c in cases
    )
    assert _filter(page, "no such case at all") == 0
    assert page.locator("#no-match").is_visible()
    page.click("#clear")
    assert _shown(page) == (n, n)
    assert _filter(page, "scenario:tiny_magnitudes dtype:float32") == sum(
        c["scenario"] == "tiny_magnitudes" and c["dtype"] == "float32" for c in cases
    )
    page.click("#clear")
    # a matrix cell lists exactly its cases (the last row's, whose label may hold spaces)
    m = outcome.matrix(report, "single")
    row = m.rows[-1]
    j, col = next((j, col) for j, col in enumerate(m.columns) if m.cell(row, col))
    page.locator("#matrix tbody tr").nth(len(m.rows) - 1).locator("td").nth(j).locator("button").click()
    assert _shown(page)[0] == sum(m.cell(row, col).values())
    page.click("#clear")
    # sort by the error/bound ratio, descending: the worst case first
    header = page.locator("#cases th[data-sort] button", has_text="err / bound")
    header.click()
    header.click()
    keys = page.evaluate(
        "Array.from(document.querySelectorAll('#cases tbody.case'))"
        ".map(b => b.rows[0].cells[8].getAttribute('data-v'))"
    )
    nums = [float(k) for k in keys if k]
    assert nums == sorted(nums, reverse=True)
    assert not problems


def test_known_nan_numbers_and_copy(browser: Any, pages: dict[str, tuple[dict[str, Any], Path]]) -> None:
    report, path = pages["synthetic"]
    page = browser.new_page(viewport={"width": WIDTH, "height": HEIGHT})
    page.goto(path.as_uri())
    # the known finding is never shown as divergent
    known = [c for c in report["cases"] if c.get("expected")]
    assert known and all(outcome.status(c) == "known" for c in known)
    assert _filter(page, KNOWN_ENTRY) == len(known)
    badges = page.eval_on_selector_all(
        "#cases tbody.case:not([hidden]) tr.main .badge", "els => els.map(e => e.textContent)"
    )
    assert set(badges) == {"known"}
    # the NaN case: nan and inf as words, got/expected with every digit
    nan_id = "keras-torch[default]-cpu-float32-basic-free-s0"
    card = page.locator(f"details.card:has(code.cid:text-is('{nan_id}'))")
    text = card.inner_text()
    assert "nan" in text and "inf" in text and "-0.10662397820290392" in text
    assert "e+308" not in page.content()
    # the copy button copies the command exactly (pasted back into the filter box)
    button = card.locator(".cmd button.copy")
    button.click()
    sync_api.expect(button).to_have_text("copied")  # the clipboard API answers asynchronously
    page.fill("#q", "")
    page.focus("#q")
    page.keyboard.press("Control+V")
    assert page.input_value("#q") == LONG_REPRO
    page.close()
