r"""Binary32 elementary operations as real frameworks compute them, bit for bit.

:mod:`adamw_ref.arithmetic` rounds every ``+ - * / sqrt`` correctly: that is IEEE 754 and what
the canonical reference means by binary32. The frameworks do not always do that. This module
emulates, on Python floats that hold binary32 values, the operations their AdamW steps were
*measured* to perform (``docs/bitexact/``; the measurements are ``tests/adapters/
test_bit_exact_*.py``):

* the correctly rounded operations: :func:`add`, :func:`sub`, :func:`mul`, :func:`div`,
  :func:`sqrt` (each computed in binary64 and rounded once: innocuous double rounding, as in
  :mod:`adamw_ref.arithmetic`);
* :func:`fma`, the fused multiply-add :math:`\mathrm{fl}(a b + c)` with *one* rounding, exact:
  :math:`ab` of two binary32 values is exact in binary64, the sum's rounding error is recovered
  exactly (Knuth's TwoSum) and decides the one case double rounding gets wrong, a binary64 sum
  that falls exactly on a binary32 midpoint;
* :func:`sqrt_mkl_ex`, Intel MKL's ``vsSqrt`` in its high-accuracy mode on the code path MKL
  selects on AMD processors (kernel ``mkl_vml_kernel_sSqrt_EXHAynn``, read from the
  disassembly of the MKL that PyTorch 2.13 links statically): ``rsqrtps`` and two coupled
  Newton steps in binary32, *not* correctly rounded (about 17 % of results are one ulp off).
  ``rsqrtps`` is an approximate instruction whose table the vendor does not publish; the table
  here (8192 entries of 13 bits) was read off an AMD EPYC of family 26 (Zen 5), exhaustively;
* :data:`FLUSH_TO_ZERO`: the same operations with subnormal inputs read as zero and tiny results
  flushed to zero (x86 DAZ and FTZ, which XLA's CPU runtime and TensorFlow switch on: jax and
  TensorFlow compute :math:`2^{-100}\cdot2^{-27}` as 0);
* :func:`powf_glibc`, the GNU C library's ``powf`` (glibc 2.28 onwards, ``e_powf.c`` from Arm's
  optimized-routines): a binary64 table-and-polynomial evaluation rounded once, within 0.82 ulp
  but *not* correctly rounded (``0.999f**k`` is one ulp off for about 0.6 % of
  :math:`k\le 2\cdot10^4`). XLA, Eigen, MLX and ATen's scalar ``pow`` call it.

Special values follow IEEE 754 (``x/0`` is :math:`\pm\infty` or NaN, ``sqrt`` of a negative is
NaN); binary32 overflow gives :math:`\pm\infty`.
"""

from __future__ import annotations

import base64
import math
import struct
import zlib
from collections.abc import Sequence

from adamw_ref.formats import BINARY32, round_binary32, round_to_format

__all__ = [
    "FLUSH_TO_ZERO",
    "IEEE",
    "Binary32Ops",
    "add",
    "add_s",
    "daz",
    "div",
    "div_s",
    "f32",
    "fma",
    "fma_s",
    "maximum",
    "mul",
    "mul_s",
    "powf_correctly_rounded",
    "powf_glibc",
    "r32",
    "rsqrtps_zen5",
    "sqrt",
    "sqrt_mkl_ex",
    "sub",
    "sub_s",
]

Vec = list[float]


def f32(x: float) -> float:
    """``x`` rounded to binary32 (to nearest, ties to even), as a Python float."""
    return round_to_format(float(x), BINARY32)


def r32(xs: Sequence[float]) -> Vec:
    """Every value rounded to binary32 (a C ``(float)`` cast)."""
    return round_binary32(xs)


def _div(a: float, b: float) -> float:
    try:
        return a / b
    except ZeroDivisionError:
        if a != a or a == 0.0:
            return math.nan
        return math.copysign(math.inf, a) * math.copysign(1.0, b)


def _sqrt(a: float) -> float:
    return math.sqrt(a) if a >= 0.0 else (a if a != a else math.nan)


# ------------------------------------------------------------------ correctly rounded operations
def add(xs: Sequence[float], ys: Sequence[float]) -> Vec:
    """:math:`\\mathrm{fl}(x+y)` elementwise."""
    return r32([x + y for x, y in zip(xs, ys)])


def sub(xs: Sequence[float], ys: Sequence[float]) -> Vec:
    """:math:`\\mathrm{fl}(x-y)` elementwise."""
    return r32([x - y for x, y in zip(xs, ys)])


def mul(xs: Sequence[float], ys: Sequence[float]) -> Vec:
    """:math:`\\mathrm{fl}(x\\cdot y)` elementwise."""
    return r32([x * y for x, y in zip(xs, ys)])


def div(xs: Sequence[float], ys: Sequence[float]) -> Vec:
    """:math:`\\mathrm{fl}(x/y)` elementwise (IEEE division by zero)."""
    return r32([_div(x, y) for x, y in zip(xs, ys)])


def add_s(xs: Sequence[float], c: float) -> Vec:
    """:math:`\\mathrm{fl}(x+c)` for a binary32 scalar ``c``."""
    return r32([x + c for x in xs])


def sub_s(c: float, xs: Sequence[float]) -> Vec:
    """:math:`\\mathrm{fl}(c-x)` for a binary32 scalar ``c``."""
    return r32([c - x for x in xs])


def mul_s(xs: Sequence[float], c: float) -> Vec:
    """:math:`\\mathrm{fl}(x\\cdot c)` for a binary32 scalar ``c``."""
    return r32([x * c for x in xs])


def div_s(xs: Sequence[float], c: float) -> Vec:
    """:math:`\\mathrm{fl}(x/c)` for a binary32 scalar ``c``."""
    return r32([_div(x, c) for x in xs])


def sqrt(xs: Sequence[float]) -> Vec:
    """The correctly rounded square root (``vsqrtps``, ``std::sqrt``, numpy)."""
    return r32([_sqrt(x) for x in xs])


def maximum(xs: Sequence[float], ys: Sequence[float]) -> Vec:
    """``torch.maximum``: the larger value, NaN if either is NaN."""
    return [x if x != x else (y if y != y else (x if x >= y else y)) for x, y in zip(xs, ys)]


# ------------------------------------------------------------------------- fused multiply-add
def _fma_fix(s: float, r: float, err: float) -> float:
    """The correct rounding of :math:`s+err` given ``r``, the binary32 rounding of ``s``.

    ``s`` is the binary64 sum and ``err`` its exact rounding error. Double rounding goes wrong
    only when ``s`` lies exactly halfway between two binary32 values (then ``err`` decides);
    every binary32 midpoint is a binary64 number, so otherwise ``s`` and the exact sum round
    alike."""
    d = s - r
    if d == 0.0 or not math.isfinite(r) or not math.isfinite(err):
        return r
    other = r + 2.0 * d
    if f32(other) != other:  # s is not a midpoint
        return r
    return other if (err > 0.0) == (d > 0.0) else r


def fma(xs: Sequence[float], ys: Sequence[float], zs: Sequence[float]) -> Vec:
    """:math:`\\mathrm{fl}(x y + z)` with a single rounding, elementwise (binary32 inputs)."""
    sums: Vec = []
    fixes: list[tuple[int, float]] = []
    for i, (x, y, z) in enumerate(zip(xs, ys, zs)):
        p = x * y  # exact: two 24-bit significands
        s = p + z
        bb = s - p
        err = (p - (s - bb)) + (z - bb)  # TwoSum: p + z = s + err exactly
        sums.append(s)
        if err != 0.0:
            fixes.append((i, err))
    out = r32(sums)
    for i, err in fixes:
        out[i] = _fma_fix(sums[i], out[i], err)
    return out


def fma_s(x: float, ys: Sequence[float], zs: Sequence[float]) -> Vec:
    """:math:`\\mathrm{fl}(x y + z)` with one rounding for a binary32 scalar ``x``."""
    return fma([x] * len(ys), ys, zs)


# -------------------------------------------------------------------------- MKL's vsSqrt (EX)
_RSQRT_ZEN5_DIFFS = (
    "eNrdlo2OwjAMg528/0OfdAe39TeYpGmBMaWeP6eimkREfj/4K6Iy1yI+Xpy8V6Pj35/phH3F313B+7jWaLQa/mqNYL7vFydTaDX8"
    "1RrBfO3rpe7foWb53RoWf5HdutrH4rxZH+vyfN7XCOaj/Q6Ppky0kny2BstLeYmhcZjv5vFdF97NVedRGyOf5bN9k2fCHS3O/G79"
    "L+vjGGiQfHS/aB7Fk+f7celsfwdPRlw6ez9bl563ntbPzJOTtRo+gid5BPO9n4xmOdZK8qzG4vzIfxYlZ089eBbmdPGXeDenGsF+"
    "No8vm2fB+sYk4fW9fHS+0ZvnUCTnJ3xnHlzvZ/NtPnBY+YAKtC9+ORjONUiezSO5Hw7r5+XpfoG9P1HXHhbvjeR8NJ/dL9pv+cd6"
    "cFt+Nn9a/vT9rPsH+YQQAA=="
)


def _rsqrt_table() -> tuple[int, ...]:
    diffs = zlib.decompress(base64.b64decode(_RSQRT_ZEN5_DIFFS))
    out = [8191]
    for d in diffs:
        out.append(out[-1] - d)
    if len(out) != 8192 or sum(out) != 47454208:  # the table as measured
        raise RuntimeError("rsqrtps table corrupt")
    return tuple(out)


#: ``rsqrtps`` of AMD Zen 5 on :math:`x\in[1,4)`: ``K[i] * 2**-13`` where ``i`` is the exponent's
#: parity (bit 12) and the top 12 bits of the significand; constant on each such block.
_RSQRT_K = _rsqrt_table()
_MKL_SLOW_FROM = struct.unpack("<f", struct.pack("<I", 0x7F7FF800))[0]


def rsqrtps_zen5(x: float) -> float:
    """``rsqrtps`` (SSE approximate :math:`1/\\sqrt{x}`, relative error below
    :math:`1.5\\cdot 2^{-12}`) as AMD Zen 5 computes it, for a positive normal binary32 ``x``."""
    f, e = math.frexp(x)  # x = f 2^e, f in [0.5, 1): binary32 exponent e-1
    par = (e - 1) & 1
    idx = (par << 12) | int((2.0 * f - 1.0) * 4096.0)
    return math.ldexp(float(_RSQRT_K[idx]), -13 - ((e - 1 - par) >> 1))


def sqrt_mkl_ex(xs: Sequence[float]) -> Vec:
    r"""MKL ``vsSqrt`` (``VML_HA``), EX kernel: :math:`y=\mathrm{rsqrtps}(x)`, :math:`g=xy`,
    :math:`h=y/2`, :math:`r=\tfrac12-gh`, :math:`g_1=g r+g`, :math:`h_1=h r+h`,
    :math:`d=x-g_1^2`, result :math:`d h_1+g_1`, every operation rounded to binary32 (SSE,
    no FMA). Zero, subnormal, negative, infinite, NaN and the largest inputs
    (:math:`x\ge(1-2^{-12})2^{128}`) take MKL's scalar path, which is correctly rounded."""
    n = len(xs)
    slow = [not (BINARY32.min_normal <= x < _MKL_SLOW_FROM) for x in xs]
    xv = [1.0 if s else x for x, s in zip(xs, slow)]
    y = [rsqrtps_zen5(x) for x in xv]
    h = mul_s(y, 0.5)
    g = mul(xv, y)
    r = sub_s(0.5, mul(g, h))
    g1 = add(mul(g, r), g)
    h1 = add(mul(h, r), h)
    d = sub(xv, mul(g1, g1))
    out = add(mul(d, h1), g1)
    for i in range(n):
        if slow[i]:
            out[i] = f32(_sqrt(xs[i]))
    return out


# ------------------------------------------------------------------------------------ powf
_LOG2_TAB = tuple(
    (float.fromhex(a), float.fromhex(b))
    for a, b in (
        ("0x1.661ec79f8f3bep+0", "-0x1.efec65b963019p-2"),
        ("0x1.571ed4aaf883dp+0", "-0x1.b0b6832d4fca4p-2"),
        ("0x1.49539f0f010bp+0", "-0x1.7418b0a1fb77bp-2"),
        ("0x1.3c995b0b80385p+0", "-0x1.39de91a6dcf7bp-2"),
        ("0x1.30d190c8864a5p+0", "-0x1.01d9bf3f2b631p-2"),
        ("0x1.25e227b0b8eap+0", "-0x1.97c1d1b3b7afp-3"),
        ("0x1.1bb4a4a1a343fp+0", "-0x1.2f9e393af3c9fp-3"),
        ("0x1.12358f08ae5bap+0", "-0x1.960cbbf788d5cp-4"),
        ("0x1.0953f419900a7p+0", "-0x1.a6f9db6475fcep-5"),
        ("0x1p+0", "0x0p+0"),
        ("0x1.e608cfd9a47acp-1", "0x1.338ca9f24f53dp-4"),
        ("0x1.ca4b31f026aap-1", "0x1.476a9543891bap-3"),
        ("0x1.b2036576afce6p-1", "0x1.e840b4ac4e4d2p-3"),
        ("0x1.9c2d163a1aa2dp-1", "0x1.40645f0c6651cp-2"),
        ("0x1.886e6037841edp-1", "0x1.88e9c2c1b9ff8p-2"),
        ("0x1.767dcf5534862p-1", "0x1.ce0a44eb17bccp-2"),
    )
)
_LOG2_POLY = tuple(
    float.fromhex(s)
    for s in (
        "0x1.27616c9496e0bp-2",
        "-0x1.71969a075c67ap-2",
        "0x1.ec70a6ca7baddp-2",
        "-0x1.7154748bef6c8p-1",
        "0x1.71547652ab82bp0",
    )
)
_EXP2_TAB = (
    0x3FF0000000000000, 0x3FEFD9B0D3158574, 0x3FEFB5586CF9890F, 0x3FEF9301D0125B51,
    0x3FEF72B83C7D517B, 0x3FEF54873168B9AA, 0x3FEF387A6E756238, 0x3FEF1E9DF51FDEE1,
    0x3FEF06FE0A31B715, 0x3FEEF1A7373AA9CB, 0x3FEEDEA64C123422, 0x3FEECE086061892D,
    0x3FEEBFDAD5362A27, 0x3FEEB42B569D4F82, 0x3FEEAB07DD485429, 0x3FEEA47EB03A5585,
    0x3FEEA09E667F3BCD, 0x3FEE9F75E8EC5F74, 0x3FEEA11473EB0187, 0x3FEEA589994CCE13,
    0x3FEEACE5422AA0DB, 0x3FEEB737B0CDC5E5, 0x3FEEC49182A3F090, 0x3FEED503B23E255D,
    0x3FEEE89F995AD3AD, 0x3FEEFF76F2FB5E47, 0x3FEF199BDD85529C, 0x3FEF3720DCEF9069,
    0x3FEF5818DCFBA487, 0x3FEF7C97337B9B5F, 0x3FEFA4AFA2A490DA, 0x3FEFD0765B6E4540,
)  # fmt: skip
_EXP2_POLY = tuple(
    float.fromhex(s) for s in ("0x1.c6af84b912394p-5", "0x1.ebfce50fac4f3p-3", "0x1.62e42ff0c52d6p-1")
)
_EXP2_SHIFT = float.fromhex("0x1.8p+52") / 32


def _bits32(x: float) -> int:
    return int(struct.unpack("<I", struct.pack("<f", x))[0])


def _float32(i: int) -> float:
    return float(struct.unpack("<f", struct.pack("<I", i & 0xFFFFFFFF))[0])


def _log2_inline(ix: int) -> float:
    tmp = (ix - 0x3F330000) & 0xFFFFFFFF
    i = (tmp >> 19) % 16
    top = tmp & 0xFF800000
    k = (top - (1 << 32) if top & 0x80000000 else top) >> 23
    invc, logc = _LOG2_TAB[i]
    z = _float32(ix - top)
    a = _LOG2_POLY
    r = z * invc - 1.0
    y0 = logc + float(k)
    r2 = r * r
    y = a[0] * r + a[1]
    p = a[2] * r + a[3]
    r4 = r2 * r2
    q = a[4] * r + y0
    q = p * r2 + q
    return y * r4 + q


def _exp2_inline(xd: float) -> float:
    kd = xd + _EXP2_SHIFT
    ki = struct.unpack("<Q", struct.pack("<d", kd))[0]
    kd -= _EXP2_SHIFT
    r = xd - kd
    t = (_EXP2_TAB[ki % 32] + (ki << 47)) & 0xFFFFFFFFFFFFFFFF
    s = float(struct.unpack("<d", struct.pack("<Q", t))[0])
    c = _EXP2_POLY
    z = c[0] * r + c[1]
    r2 = r * r
    y = c[2] * r + 1.0
    y = z * r2 + y
    return y * s


def powf_glibc(x: float, y: float) -> float:
    r"""glibc's ``powf(x, y)`` for binary32 :math:`x\ge0` and finite ``y``.

    :math:`\log_2 x` from a 16-entry table and a degree-5 polynomial, :math:`2^{y\log_2 x}` from
    a 32-entry table and a cubic, all in binary64, rounded once to binary32. (glibc's x86-64
    FMA variant contracts the polynomials; on every input tested the binary32 result is the
    same.)"""
    if x < 0.0 or not math.isfinite(y):
        raise ValueError("powf_glibc: x >= 0 and a finite y only")
    if y == 0.0 or x == 1.0:
        return 1.0
    if x != x:
        return x
    if x == 0.0:
        return 0.0 if y > 0.0 else math.inf
    if math.isinf(x):
        return math.inf if y > 0.0 else 0.0
    ix = _bits32(x)
    if ix < 0x00800000:  # subnormal: normalise so the exponent becomes negative
        ix = (_bits32(x * 8388608.0) & 0x7FFFFFFF) - (23 << 23)
    ylogx = y * _log2_inline(ix & 0xFFFFFFFF if ix >= 0 else ix + (1 << 32))
    if abs(ylogx) >= 126.0:
        if ylogx > float.fromhex("0x1.fffffffd1d571p+6"):
            return math.inf
        if ylogx <= -150.0:
            return 0.0
    return f32(_exp2_inline(ylogx))


def powf_correctly_rounded(x: float, y: float) -> float:
    """:math:`x^y` correctly rounded to binary32 (binary64 ``pow`` rounded once; exact for the
    integer exponents of a step count unless the power lies within a binary64 ulp of a
    binary32 midpoint)."""
    return f32(float(x) ** float(y))


# ------------------------------------------------------------------------ flush to zero (FTZ/DAZ)
_MIN_NORMAL = BINARY32.min_normal


def daz(xs: Sequence[float]) -> Vec:
    """Subnormal inputs read as (signed) zero: x86's DAZ ("denormals are zero") mode."""
    return [math.copysign(0.0, x) if x != 0.0 and abs(x) < _MIN_NORMAL else x for x in xs]


def _ftz(exact: Sequence[float], rounded: Vec) -> Vec:
    """x86's FTZ mode: a result whose value *before* rounding is below the smallest normal
    becomes a zero of its sign (tininess is detected before rounding: ``(1-2^-24) * 2^-126``
    gives 0, not the :math:`2^{-126}` it rounds to)."""
    return [math.copysign(0.0, e) if abs(e) < _MIN_NORMAL else r for e, r in zip(exact, rounded)]


class Binary32Ops:
    """The binary32 operations above as one namespace; :data:`IEEE` rounds by IEEE 754,
    :data:`FLUSH_TO_ZERO` additionally reads subnormal inputs as zero and flushes tiny results
    (the MXCSR modes XLA's CPU runtime and TensorFlow set while they compute)."""

    ftz = False

    def f32(self, x: float) -> float:
        return f32(x)

    def add(self, xs: Sequence[float], ys: Sequence[float]) -> Vec:
        return add(xs, ys)

    def sub(self, xs: Sequence[float], ys: Sequence[float]) -> Vec:
        return sub(xs, ys)

    def mul(self, xs: Sequence[float], ys: Sequence[float]) -> Vec:
        return mul(xs, ys)

    def div(self, xs: Sequence[float], ys: Sequence[float]) -> Vec:
        return div(xs, ys)

    def add_s(self, xs: Sequence[float], c: float) -> Vec:
        return add_s(xs, c)

    def mul_s(self, xs: Sequence[float], c: float) -> Vec:
        return mul_s(xs, c)

    def sqrt(self, xs: Sequence[float]) -> Vec:
        return sqrt(xs)

    def fma(self, xs: Sequence[float], ys: Sequence[float], zs: Sequence[float]) -> Vec:
        return fma(xs, ys, zs)

    def maximum(self, xs: Sequence[float], ys: Sequence[float]) -> Vec:
        return maximum(xs, ys)


class _FlushToZero(Binary32Ops):
    ftz = True

    def f32(self, x: float) -> float:
        return _ftz([x], [f32(x)])[0]

    def add(self, xs: Sequence[float], ys: Sequence[float]) -> Vec:
        e = [x + y for x, y in zip(daz(xs), daz(ys))]  # exact: two binary32 values
        return _ftz(e, r32(e))

    def sub(self, xs: Sequence[float], ys: Sequence[float]) -> Vec:
        e = [x - y for x, y in zip(daz(xs), daz(ys))]
        return _ftz(e, r32(e))

    def mul(self, xs: Sequence[float], ys: Sequence[float]) -> Vec:
        e = [x * y for x, y in zip(daz(xs), daz(ys))]  # exact
        return _ftz(e, r32(e))

    def div(self, xs: Sequence[float], ys: Sequence[float]) -> Vec:
        e = [_div(x, y) for x, y in zip(daz(xs), daz(ys))]
        return _ftz(e, r32(e))

    def add_s(self, xs: Sequence[float], c: float) -> Vec:
        return self.add(xs, [c] * len(xs))

    def mul_s(self, xs: Sequence[float], c: float) -> Vec:
        return self.mul(xs, [c] * len(xs))

    def sqrt(self, xs: Sequence[float]) -> Vec:
        return sqrt(daz(xs))  # the square root of a normal number is normal

    def fma(self, xs: Sequence[float], ys: Sequence[float], zs: Sequence[float]) -> Vec:
        xs, ys, zs = daz(xs), daz(ys), daz(zs)
        out = fma(xs, ys, zs)
        # the exact value is tiny iff the binary64 sum is, or equals 2^-126 and the error
        # points inward (|x y + z| < 2^-126 exactly)
        exact = []
        for x, y, z in zip(xs, ys, zs):
            p = x * y
            s = p + z
            bb = s - p
            err = (p - (s - bb)) + (z - bb)
            inward = abs(s) == _MIN_NORMAL and err != 0.0 and (err > 0.0) != (s > 0.0)
            exact.append(s / 2.0 if inward else s)
        return _ftz(exact, out)

    def maximum(self, xs: Sequence[float], ys: Sequence[float]) -> Vec:
        return maximum(daz(xs), daz(ys))


IEEE = Binary32Ops()
FLUSH_TO_ZERO: Binary32Ops = _FlushToZero()
