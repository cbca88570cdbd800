"""adamw-conformance: does an installed AdamW compute what the reference specification says?

Modules: :mod:`~conformance.scenarios` (catalogue), :mod:`~conformance.gradients` (recorded
gradient streams), :mod:`~conformance.tolerance` (error bounds), :mod:`~conformance.compare`
(metrics and verdicts), :mod:`~conformance.diagnose` (which knob/profile explains a divergence),
:mod:`~conformance.worker` / :mod:`~conformance.runner` (one subprocess per adapter),
:mod:`~conformance.report.schema` (versioned JSON report), :mod:`~conformance.cli`.
"""

__version__ = "0.1.0"
