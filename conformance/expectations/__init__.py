"""Known findings: expectation files, and marking the cases they match.

``known_findings.txt`` (this package) lists the divergences this project found in released
frameworks, each keyed by the framework versions it was observed on. ``adamw-conformance run``
applies it by default (``--strict`` turns it off, ``--known-findings FILE`` replaces it); the
pytest plug-in reads files in the same format.

One entry per line::

    PATTERN [NAME==VERSION ...]   # comment

``PATTERN`` is a substring of case ids (``adapter[implementation]-device-dtype-scenario-mode-sSEED``).
Each ``NAME==VERSION`` must hold for the report's frameworks (``envelope.frameworks``) for the
entry to apply: ``VERSION`` is an :mod:`fnmatch` pattern, ``|`` separates alternatives, and a
local version label is ignored (``torch==2.11.0`` matches ``2.11.0+cu130``). So a release that
fixes or changes a finding shows up as unexpected, not as known. Comment lines directly above an
entry describe it.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: The shipped known findings of released frameworks.
KNOWN_FINDINGS = Path(__file__).parent / "known_findings.txt"


class ExpectationFileError(ValueError):
    """A malformed expectation file (one line: file, line number, what is wrong)."""


@dataclass(frozen=True)
class KnownFinding:
    """One entry: a case-id substring, the framework versions it was observed on, and why."""

    pattern: str
    versions: tuple[tuple[str, str], ...] = ()
    comment: str = ""
    line: int = 0

    @property
    def label(self) -> str:
        """The entry as written: the pattern and its version keys."""
        keys = " ".join(f"{name}=={version}" for name, version in self.versions)
        return f"{self.pattern} ({keys})" if keys else self.pattern

    def version_mismatch(self, frameworks: Mapping[str, str]) -> list[str]:
        """``name: observed VERSION, here X`` for every version key this run does not satisfy."""
        out = []
        for name, wanted in self.versions:
            have = frameworks.get(name)
            base = (have or "").split("+", 1)[0]
            ok = have is not None and any(
                fnmatch.fnmatchcase(have, w) or fnmatch.fnmatchcase(base, w) for w in wanted.split("|")
            )
            if not ok:
                out.append(f"{name}: observed on {wanted}, here {have or 'absent'}")
        return out


def read_findings(path: str | Path) -> list[KnownFinding]:
    """Parse an expectation file; :class:`ExpectationFileError` names the line of a bad entry."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ExpectationFileError(f"{p}: cannot be read: {exc}") from None
    out: list[KnownFinding] = []
    comment: list[str] = []
    for n, raw in enumerate(text.splitlines(), start=1):
        body, _, trailing = raw.partition("#")
        tokens = body.split()
        if not tokens:
            comment = [*comment, trailing.strip()] if raw.strip().startswith("#") else []
            continue
        versions = []
        for tok in tokens[1:]:
            name, sep, version = tok.partition("==")
            if not sep or not name or not version:
                raise ExpectationFileError(
                    f"{p}:{n}: {tok!r}: expected NAME==VERSION after the case-id pattern"
                )
            versions.append((name, version))
        note = " ".join([*comment, trailing.strip()]).strip()
        out.append(KnownFinding(tokens[0], tuple(versions), note, n))
    return out


def read_entries(path: str | Path) -> list[str]:
    """The case-id patterns of an expectation file (version keys and comments dropped)."""
    return [f.pattern for f in read_findings(path)]


@dataclass
class Marking:
    """What applying known findings to a report found."""

    matched: dict[str, int] = field(default_factory=dict)  # entry label -> cases marked known
    fixed: list[KnownFinding] = field(default_factory=list)  # applies, matches, nothing diverges
    not_run: list[KnownFinding] = field(default_factory=list)  # matches no case of this run
    other_version: dict[str, list[str]] = field(default_factory=dict)  # label -> mismatches


def mark_known(
    cases: Sequence[dict[str, Any]], findings: Sequence[KnownFinding], frameworks: Mapping[str, str]
) -> Marking:
    """Set ``case["expected"]`` (the entry's label) on every divergent or error case that an
    entry matches and whose version keys this run satisfies.

    Entries that match cases here but none diverges are ``fixed`` (the finding is gone: remove
    the entry); entries whose version keys do not hold are reported in ``other_version`` (the
    framework changed: confirm the finding and update the entry); the divergences they would
    have covered stay unexpected.
    """
    res = Marking()
    seen: set[int] = set()
    used: set[int] = set()
    applies = {i: not f.version_mismatch(frameworks) for i, f in enumerate(findings)}
    for c in cases:
        cid = str(c.get("id", ""))
        hits = [i for i, f in enumerate(findings) if f.pattern in cid]
        seen.update(hits)
        if c.get("verdict") not in ("divergent", "error"):
            continue
        for i in hits:
            if applies[i]:
                c["expected"] = findings[i].label
                used.add(i)
                res.matched[findings[i].label] = res.matched.get(findings[i].label, 0) + 1
                break
        else:
            for i in hits:
                res.other_version[findings[i].label] = findings[i].version_mismatch(frameworks)
    res.fixed = [f for i, f in enumerate(findings) if i in seen and applies[i] and i not in used]
    res.not_run = [f for i, f in enumerate(findings) if i not in seen]
    return res


def mark_expected(cases: list[dict[str, Any]], entries: list[str]) -> tuple[list[str], list[str]]:
    """Version-free marking by plain patterns (the pytest plug-in's ``--adamw-xfails-file``):
    ``case["expected"] = entry`` on matched divergent/error cases. Returns ``(fixed, not_run)``."""
    res = mark_known(cases, [KnownFinding(e) for e in entries], {})
    return [f.pattern for f in res.fixed], [f.pattern for f in res.not_run]
