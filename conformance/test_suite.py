"""The conformance cases as tests, one per case (see :mod:`conformance.pytest_plugin`).

``python -m pytest -p conformance.pytest_plugin --pyargs conformance.test_suite --adamw-adapter torch``
or ``python -m pytest path/to/conformance/test_suite.py --adamw-adapter torch`` (``conftest.py``
beside this file activates the plug-in then).
"""

from __future__ import annotations

from typing import Any

from conformance.pytest_plugin import check_case


def test_case(conformance_case: Any, conformance_executor: Any) -> None:
    check_case(conformance_executor, conformance_case)
