"""Known findings: expectation files of case-id substrings, and marking the cases they match.

``known_findings.txt`` (this package) lists the divergences this project found in released
frameworks; ``run --xfails-file`` and the pytest plugin read files in the same format.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

#: The shipped known findings of released frameworks.
KNOWN_FINDINGS = Path(__file__).parent / "known_findings.txt"


def read_entries(path: str) -> list[str]:
    """Lines of case-id substrings; ``#`` starts a comment."""
    out = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        entry = line.split("#", 1)[0].strip()
        if entry:
            out.append(entry)
    return out


def mark_expected(cases: list[dict[str, Any]], entries: list[str]) -> tuple[list[str], list[str]]:
    """Flag divergent/error cases whose id contains an entry (``case["expected"] = entry``).

    Returns ``(fixed, not_run)``: entries that match cases of this report none of which is
    divergent or error (the finding is gone: a fix, or a changed id), and entries that match no
    case at all (not run here, e.g. a CUDA entry in a CPU run, or a typo).
    """
    used: set[str] = set()
    seen: set[str] = set()
    for c in cases:
        cid = c.get("id", "")
        for e in entries:
            if e in cid:
                seen.add(e)
        if c.get("verdict") not in ("divergent", "error"):
            continue
        for e in entries:
            if e in cid:
                c["expected"] = e
                used.add(e)
                break
    fixed = [e for e in entries if e in seen and e not in used]
    not_run = [e for e in entries if e not in seen]
    return fixed, not_run
