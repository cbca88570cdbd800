"""``adamw-ref vectors generate [--out DIR] | lint [--dir DIR] | verify --adapter NAME``.

``verify`` runs an implementation, which needs the conformance suite: it is the command that the
suite registers as ``vectors-verify`` in the ``adamw_ref.commands`` entry-point group
(``adamw-conformance vectors verify``, same arguments).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from adamw_ref.vectors.generate import generate
from adamw_ref.vectors.lint import default_vectors_dir, lint


def _cmd_generate(args: argparse.Namespace) -> int:
    out = Path(args.out) if args.out else default_vectors_dir()
    if out.exists() and not out.is_dir():
        print(
            f"adamw-ref vectors generate: error: --out {str(out)!r}: exists and is not a directory",
            file=sys.stderr,
        )
        return 2
    try:
        paths = generate(out)
    except OSError as exc:
        print(f"adamw-ref vectors generate: error: --out {str(out)!r}: {exc.strerror}", file=sys.stderr)
        return 2
    total = sum(json.loads(p.read_text())["numberOfTests"] for p in paths)
    size = sum(p.stat().st_size for p in paths)
    print(f"wrote {len(paths)} files, {total} tests, {size} bytes to {paths[0].parent}")
    return 0


def _cmd_lint(args: argparse.Namespace) -> int:
    directory = Path(args.dir) if args.dir else default_vectors_dir()
    if not directory.is_dir():
        print(f"adamw-ref vectors lint: error: --dir {str(directory)!r}: not a directory", file=sys.stderr)
        return 2
    errs = lint(directory)
    for e in errs:
        print(e)
    print(f"lint: {'OK' if not errs else f'{len(errs)} problem(s)'} ({directory})")
    return 1 if errs else 0


def cli_main(argv: Sequence[str] | None = None) -> int:
    """``adamw-ref vectors generate [--out DIR] | lint [--dir DIR] | verify --adapter NAME``."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] == ["verify"]:
        from adamw_ref.commands import load_command

        return int(load_command("vectors-verify")(args_list[1:]) or 0)
    parser = argparse.ArgumentParser(prog="adamw-ref vectors", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("generate", help="write the vector files (deterministic)")
    p.add_argument("--out", help="output directory (default: adamw_ref/vectors/data)")
    p.set_defaults(func=_cmd_generate)
    p = sub.add_parser(
        "lint",
        help="check structure, ids, counts and canonical formatting (stdlib; "
        "'adamw-conformance vectors lint' adds the JSON Schema)",
    )
    p.add_argument("--dir", help="vector directory (default: adamw_ref/vectors/data)")
    p.set_defaults(func=_cmd_lint)
    sub.add_parser(
        "verify",
        add_help=False,
        help="check an implementation against the vectors (provided by the suite: "
        "adamw-conformance vectors verify; see 'adamw-ref vectors verify --help')",
    )
    args = parser.parse_args(args_list)
    func: Callable[[argparse.Namespace], int] = args.func
    return func(args)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(cli_main())
