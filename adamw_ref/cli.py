"""The ``adamw-ref`` command line.

Subcommands: ``explain`` (one or more steps with every intermediate), ``run`` (a JSON case file ->
a JSON trajectory), ``profiles`` and ``knobs`` (what the specification knows), ``vectors``
(:mod:`adamw_ref.vectors.cli`), and the commands that packages built on the specification register
(:mod:`adamw_ref.commands`: ``translate``, ``vectors verify``). Bad input prints one line on stderr
and exits with status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from enum import Enum
from typing import Any

from adamw_ref.arithmetic import Arithmetic
from adamw_ref.config import KNOB_FIELDS, AdamWConfig
from adamw_ref.errors import AdamWRefError, ConfigError, InputError

PROG = "adamw-ref"
#: Commands provided by other packages through the ``adamw_ref.commands`` entry points.
REGISTERED = {
    "translate": "translate a recipe between frameworks (needs the adapters)",
    "transfer": "move a saved optimizer state between frameworks mid-training (needs the adapters)",
}


def _error(message: str) -> int:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return 2


def _numbers(text: str, field: str) -> list[float]:
    from adamw_ref.casefile import parse_number

    out = []
    for i, item in enumerate(x for x in text.replace(",", " ").split() if x):
        value = parse_number(item, f"{field}[{i}]")
        out.append(float(value))
    if not out:
        raise InputError(field, text, "needs at least one number")
    return out


def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _config_from_args(args: argparse.Namespace) -> AdamWConfig:
    from adamw_ref.profiles import get_profile

    cfg = get_profile(args.profile).config
    changes: dict[str, Any] = {}
    for key in ("lr", "weight_decay", "eps", "beta1", "beta2", "eps_root"):
        value = getattr(args, key)
        if value is not None:
            changes[key] = value
    for item in args.set or []:
        if "=" not in item:
            raise ConfigError("--set", item, "expected KEY=VALUE (VALUE as JSON, else a string)")
        key, _, raw = item.partition("=")
        changes[key.strip()] = _value(raw)
    return AdamWConfig.from_json(changes, base=cfg) if changes else cfg


def _cmd_explain(args: argparse.Namespace) -> int:
    from adamw_ref.casefile import load_json, parse_arithmetic
    from adamw_ref.explain import explain_steps, render, trace_to_json
    from adamw_ref.state import State, state_from_json
    from adamw_ref.step import init

    cfg = _config_from_args(args)
    arithmetic: Arithmetic[Any] = parse_arithmetic(args.dtype, "--dtype")
    theta = _numbers(args.param, "--param")
    grad = _numbers(args.grad, "--grad")
    if len(grad) == 1 and len(theta) > 1:
        grad = grad * len(theta)
    if len(grad) != len(theta):
        raise InputError("--grad", args.grad, f"needs {len(theta)} values (one per --param)")
    if isinstance(args.steps, bool) or args.steps < 1:
        raise InputError("--steps", args.steps, "must be >= 1")
    name = "theta"
    if args.state_json:
        loaded = state_from_json(load_json(args.state_json, "--state-json"))
        if len(loaded.m) != 1:
            raise InputError("--state-json", sorted(loaded.m), "must hold exactly one parameter")
        name = next(iter(loaded.m))

        def conv(d: Any) -> Any:
            return None if d is None else {k: tuple(arithmetic.vec(v)) for k, v in d.items()}

        state = State(
            step=loaded.step,
            param_steps=loaded.param_steps,
            m=conv(loaded.m),
            v=conv(loaded.v),
            v_max=conv(loaded.v_max),
        )
    params = {name: theta}
    if not args.state_json:
        state = init(params, cfg, arithmetic)
    grads = [{name: grad} for _ in range(args.steps)]
    traces = explain_steps(params, grads, state, cfg, arithmetic)
    if args.json:
        doc = {
            "profile": args.profile,
            "arithmetic": arithmetic.name,
            "config": cfg.to_json(),
            "steps": [trace_to_json(tr) for tr in traces],
        }
        print(json.dumps(doc, indent=2))
        return 0
    hp = ", ".join(
        f"{k}={getattr(cfg, k)!r}" for k in ("lr", "beta1", "beta2", "eps", "weight_decay", "eps_root")
    )
    knobs = ", ".join(f"{k}={v}" for k, v in cfg.knobs().items())
    flags = ", ".join(f"{k}={getattr(cfg, k)}" for k in ("amsgrad", "maximize", "nesterov"))
    print(f"adamw-ref explain: profile {args.profile}, arithmetic {arithmetic.name}")
    print(f"  hyperparameters: {hp}, {flags}")
    print(f"  knobs: {knobs}")
    print(f"  lr_schedule: {cfg.lr_schedule}; wd_schedule: {cfg.wd_schedule}")
    for tr in traces:
        print(render(tr, cfg, arithmetic, hex_too=args.hex))
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from adamw_ref.casefile import load_json, run_case

    doc = run_case(load_json(args.case), decimal=not args.no_decimal)
    text = json.dumps(doc, indent=1 if args.output else 2)
    if args.output and args.output != "-":
        try:
            with open(args.output, "w", encoding="utf-8") as fh:
                fh.write(text + "\n")
        except OSError as exc:
            raise InputError("-o", args.output, f"cannot be written: {exc.strerror}") from None
        print(f"wrote {len(doc['steps']) - 1} steps to {args.output}", file=sys.stderr)
    else:
        print(text)
    return 0


def _knob_value(value: Any) -> Any:
    return value.value if isinstance(value, Enum) else value


def _cmd_profiles(args: argparse.Namespace) -> int:
    from adamw_ref.profiles import PROFILES, get_profile

    names = [args.name] if args.name else list(PROFILES)
    profiles = [get_profile(n) for n in names]
    if args.json:
        print(
            json.dumps(
                [
                    {
                        "name": p.name,
                        "title": p.title,
                        "config": p.config.to_json(),
                        "implementations": list(p.implementations),
                        "source": p.source,
                        "required": list(p.required),
                        "notes": p.notes,
                    }
                    for p in profiles
                ],
                indent=2,
            )
        )
        return 0
    for p in profiles:
        c = p.config
        print(f"{p.name}: {p.title}")
        print(
            f"  defaults: lr={c.lr!r} betas=({c.beta1!r}, {c.beta2!r}) eps={c.eps!r} "
            f"weight_decay={c.weight_decay!r}"
            + (f"  (required: {', '.join(p.required)})" if p.required else "")
        )
        print("  knobs: " + ", ".join(f"{k}={v}" for k, v in c.knobs().items()))
        print("  implementations: " + "; ".join(p.implementations))
        print(f"  source: {p.source}")
        if p.notes:
            print(f"  notes: {p.notes}")
        print()
    return 0


def _cmd_knobs(args: argparse.Namespace) -> int:
    from adamw_ref.profiles import PROFILES

    base = AdamWConfig()
    rows: list[dict[str, Any]] = []
    for name in KNOB_FIELDS:
        default = getattr(base, name)
        if isinstance(default, Enum):
            values: list[Any] = [m.value for m in type(default)]
        elif isinstance(default, bool):
            values = [True, False]
        else:
            values = sorted({0, *(getattr(p.config, name) for p in PROFILES.values())})
        using = {
            str(v): [p.name for p in PROFILES.values() if _knob_value(getattr(p.config, name)) == v]
            for v in values
        }
        rows.append({"knob": name, "default": _knob_value(default), "values": values, "profiles": using})
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for row in rows:
        print(f"{row['knob']} (default {row['default']})")
        for v in row["values"]:
            users = row["profiles"][str(v)]
            print(f"  {v!s:<24} {', '.join(users) if users else '-'}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for documentation and tests)."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="The AdamW reference specification.",
        epilog="exit status: 0 success; 1 a check found a problem (vectors lint, an unreproducible "
        "translation); 2 bad input or usage (one line on stderr)",
    )
    from adamw_ref import __version__

    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    ex = sub.add_parser("explain", help="print one or more steps with every intermediate")
    ex.add_argument(
        "--profile",
        default="torch",
        help="profile name or alias, e.g. torch, keras3 (alias keras), optax (default torch)",
    )
    ex.add_argument("--lr", type=float, help="learning rate (default: the profile's)")
    ex.add_argument(
        "--weight-decay",
        dest="weight_decay",
        type=float,
        help="weight decay coefficient (default: the profile's)",
    )
    ex.add_argument("--eps", type=float, help="epsilon (default: the profile's)")
    ex.add_argument("--beta1", type=float, help="first-moment decay (default: the profile's)")
    ex.add_argument("--beta2", type=float, help="second-moment decay (default: the profile's)")
    ex.add_argument(
        "--eps-root",
        dest="eps_root",
        type=float,
        help="epsilon inside the square root (default: the profile's)",
    )
    ex.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="any config field or knob, e.g. --set decay_form=proximal",
    )
    ex.add_argument("--param", default="1.0", help="initial parameter values, comma separated")
    ex.add_argument("--grad", default="0.1", help="gradient values (repeated every step)")
    ex.add_argument("--steps", type=int, default=1, help="number of steps (same gradient)")
    ex.add_argument("--state-json", dest="state_json", help="start from this state (JSON)")
    ex.add_argument(
        "--dtype", default="float64", help="float64 | float32 | float16 | bfloat16 | decimal:DIGITS"
    )
    ex.add_argument("--hex", action="store_true", help="also print float.hex of every number")
    ex.add_argument("--json", action="store_true", help="print the trace as JSON")
    ex.set_defaults(func=_cmd_explain)

    run = sub.add_parser("run", help="run a JSON case file, write the trajectory as JSON")
    run.add_argument("case", help="case file (docs/casefile.md)")
    run.add_argument("-o", "--output", help="trajectory file (default: stdout)")
    run.add_argument("--no-decimal", action="store_true", help="omit the decimal renderings")
    run.set_defaults(func=_cmd_run)

    pr = sub.add_parser("profiles", help="list profiles with knob values and sources")
    pr.add_argument("name", nargs="?", help="one profile only")
    pr.add_argument("--json", action="store_true", help="print the profiles as JSON")
    pr.set_defaults(func=_cmd_profiles)

    kn = sub.add_parser("knobs", help="list the knobs, their values and which profiles use them")
    kn.add_argument("--json", action="store_true", help="print the knobs as JSON")
    kn.set_defaults(func=_cmd_knobs)

    vec = sub.add_parser(
        "vectors",
        help=f"language-agnostic test vectors: generate, lint, verify (see '{PROG} vectors --help')",
        add_help=False,
    )
    vec.set_defaults(func=None)
    for name, text in REGISTERED.items():
        sub.add_parser(name, help=f"{text} (see '{PROG} {name} --help')", add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``adamw-ref``; returns the exit status."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    try:
        if args_list and args_list[0] == "vectors":
            from adamw_ref.vectors.cli import cli_main

            return cli_main(args_list[1:])
        if args_list and args_list[0] in REGISTERED:
            from adamw_ref.commands import load_command

            return int(load_command(args_list[0])(args_list[1:]) or 0)
        parser = build_parser()
        try:
            args = parser.parse_args(args_list)
        except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
            return int(exc.code or 0)
        if args.command is None:
            parser.print_help()
            return 2
        return int(args.func(args))
    except AdamWRefError as exc:
        return _error(str(exc))
    except BrokenPipeError:
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
