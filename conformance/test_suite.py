"""The conformance cases as tests (collected only when pointed at: see conformance/pytest_plugin.py).

``python -m pytest conformance/test_suite.py --adapter torch``
"""

from __future__ import annotations

from typing import Any

from conformance.pytest_plugin import check_case


def test_case(conformance_case: Any, conformance_executor: Any) -> None:
    check_case(conformance_executor, conformance_case)
