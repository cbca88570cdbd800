"""Registers the conformance pytest plugin for ``pytest conformance/...`` (unless it is already
loaded, through ``-p conformance.pytest_plugin`` or a ``pytest11`` entry point)."""

import sys

if "conformance.pytest_plugin" not in sys.modules:
    from conformance.pytest_plugin import (  # noqa: F401
        conformance_executor,
        pytest_addoption,
        pytest_collection_modifyitems,
        pytest_generate_tests,
        pytest_report_header,
    )
