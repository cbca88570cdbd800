"""An import-linter contract type: a package imports nothing but the standard library.

Declared in ``pyproject.toml`` (``[tool.importlinter]``, ``contract_types``) and checked by
``lint-imports`` in ``.ci/run`` and tox. The graph must include external packages
(``include_external_packages = true``) so that third-party imports appear in it; every import of
a module of the package, at module level or inside a function, must name the package itself or a
module in :data:`sys.stdlib_module_names`.
"""

from __future__ import annotations

import sys
from typing import Any

from importlinter import Contract, ContractCheck, fields, output


class StandardLibraryOnlyContract(Contract):
    """``packages`` (a list) import only themselves and the standard library."""

    type_name = "stdlib_only"
    packages = fields.ListField(subfield=fields.StringField())

    def check(self, graph: Any, verbose: bool) -> ContractCheck:
        bad: list[dict[str, Any]] = []
        for package in self.packages:  # type: ignore[attr-defined]
            for module in sorted({package} | graph.find_descendants(package)):
                for imported in sorted(graph.find_modules_directly_imported_by(module)):
                    top = imported.split(".")[0]
                    if top == package or top in sys.stdlib_module_names:
                        continue
                    details = graph.get_import_details(importer=module, imported=imported)
                    lines = sorted({d["line_number"] for d in details})
                    bad.append({"importer": module, "imported": imported, "lines": lines})
        return ContractCheck(kept=not bad, metadata={"bad": bad})

    def render_broken_contract(self, check: ContractCheck) -> None:
        for item in check.metadata["bad"]:
            lines = ", ".join(f"l.{n}" for n in item["lines"]) or "?"
            output.print_error(
                f"{item['importer']} imports {item['imported']} ({lines}), "
                "which is not in the standard library",
                bold=False,
            )
            output.new_line()
