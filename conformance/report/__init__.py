"""The conformance report: its schema and its renderings.

:mod:`~conformance.report.schema` (versioned JSON document, TypedDicts, atomic I/O; the JSON
Schema is ``report.schema.json`` beside it), :mod:`~conformance.report.text` (a case as short
text), :mod:`~conformance.report.terminal`, :mod:`~conformance.report.plots`,
:mod:`~conformance.report.html`, :mod:`~conformance.report.markdown`. Renderers read only the
report's fields.
"""
