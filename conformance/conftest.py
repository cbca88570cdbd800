"""Activates the conformance pytest plug-in for ``python -m pytest path/to/conformance/test_suite.py``
(and for ``--pyargs conformance.test_suite``, where pytest reads this file only at collection, so
the ``--adamw-*`` options need ``-p conformance.pytest_plugin``; the environment variable works).

It registers :mod:`conformance.pytest_plugin` under the name ``-p`` and ``PYTEST_PLUGINS`` use,
unless that module is registered already (under any name) or blocked with
``-p no:conformance.pytest_plugin``: so ``-p conformance.pytest_plugin`` together with this file
never registers it twice.
"""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser, pluginmanager: pytest.PytestPluginManager) -> None:
    from conformance import pytest_plugin

    if not pluginmanager.is_registered(pytest_plugin) and not pluginmanager.is_blocked(
        pytest_plugin.PLUGIN_NAME
    ):
        pluginmanager.register(pytest_plugin, pytest_plugin.PLUGIN_NAME)
