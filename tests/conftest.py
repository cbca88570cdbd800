"""Shared pytest configuration: hypothesis profiles and the report header."""

from __future__ import annotations

import os
import platform

from hypothesis import settings

settings.register_profile("ci", max_examples=60, deadline=None, derandomize=True)
settings.register_profile("dev", max_examples=30, deadline=None)
settings.register_profile("thorough", max_examples=1000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def pytest_report_header() -> list[str]:
    import adamw_ref

    env = {k: v for k, v in os.environ.items() if k.startswith(("ADAMW_", "KERAS_BACKEND"))}
    return [
        f"adamw-ref {adamw_ref.__version__} (spec {adamw_ref.SPEC_VERSION}); "
        f"python {platform.python_version()} on {platform.machine()}",
        f"env: {env or '{}'}",
    ]
