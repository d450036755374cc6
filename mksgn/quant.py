"""The quantiser: Loihi's fixed-point number formats as straight-through torch functions.

One implementation serves quantisation-aware training (the student's forward) and export
(``Student.to_network``): export calls the very functions the forward pass used and converts the
resulting integer-valued tensors to numpy, so what was trained is what is deployed.

Units. A synapse's *real* weight ``w`` is in slayer's units (``lava.lib.dl.slayer`` neurons:
real 1.0 == ``loihi.STATE_SCALE`` = 64 units of synaptic input). Its *a-units* value is ``64 w``:
the integer synaptic input ``a`` one spike contributes (before the neuron's ``<< 6``). On the chip
``a = (sum_j m_j s_j) << e``: an 8-bit mantissa ``m`` per synapse and one exponent ``e`` per synapse
group, so ``64 w ~= m * 2**e``.

Mantissas are even, in ``[loihi.WEIGHT_MIN, loihi.WEIGHT_MAX]`` = [-256, 254]: lava's mixed-sign
8-bit synapse drops the lowest bit (``lava/utils/weightutils.py: truncate_weights``), which is also
slayer's ``quantize_8bit`` (step 2 / 64, clamp to [-256, 254] / 64). The exponent is the smallest
one that makes the largest weight fit, within ``[WEIGHT_EXP_MIN, WEIGHT_EXP_MAX]``, unless the
caller fixes it (``quantize_weight(w, exp=...)``: what stock netx needs, whose conv layers have no
exponent); then mantissas that do not fit are clamped.

Straight-through estimators (Bengio et al. 2013): ``round``/``floor``/``clamp`` act in the forward
pass and pass the gradient unchanged, so the forward is the chip's arithmetic and the backward that
of the float model.
"""
from __future__ import annotations

import contextlib
import math

import numpy as np
import torch

from mksgn import loihi

__all__ = [
    "WEIGHT_EXP_MIN", "WEIGHT_EXP_MAX", "ENCODER_WEIGHT_MAX", "INT16_MIN", "INT16_MAX",
    "round_ste", "floor_ste", "clamp_ste", "weight_exponent", "quantize_weight",
    "shift_floor", "wrap", "wrap24", "wrap32", "quantize_input", "quantize_encoder", "exact_dtype",
    "exact_float_math", "to_int", "F32_EXACT", "F64_EXACT",
]

WEIGHT_EXP_MIN, WEIGHT_EXP_MAX = loihi.WEIGHT_EXP_MIN, loihi.WEIGHT_EXP_MAX
# Host-side encoder (SSC) weights: a 12-bit signed integer convolution run by the host before the
# chip (the Encoder of mksgn.netgraph has int32 weights); 12 bits keeps 3x3x6 sums of int16 inputs
# far inside float64's exact range and resolves the folded batch norm finely.
ENCODER_WEIGHT_MAX = (1 << 11) - 1
INT16_MIN, INT16_MAX = -(1 << 15), (1 << 15) - 1
F32_EXACT = 1 << 24                # float32 holds every integer below this exactly
F64_EXACT = 1 << 53                # float64 likewise


class _Round(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return torch.round(x)

    @staticmethod
    def backward(ctx, g):
        return g


class _Floor(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return torch.floor(x)

    @staticmethod
    def backward(ctx, g):
        return g


class _Clamp(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, lo, hi):
        return torch.clamp(x, lo, hi)

    @staticmethod
    def backward(ctx, g):
        return g, None, None


def round_ste(x: torch.Tensor) -> torch.Tensor:
    """``round`` (half to even, like numpy) with an identity gradient."""
    return _Round.apply(x)


def floor_ste(x: torch.Tensor) -> torch.Tensor:
    """``floor`` with an identity gradient."""
    return _Floor.apply(x)


def clamp_ste(x: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
    """``clamp`` with an identity gradient."""
    return _Clamp.apply(x, lo, hi)


def weight_exponent(max_abs_a: float) -> int:
    """Smallest exponent e in the chip's range with ``max_abs_a / 2**e <= WEIGHT_MAX``.

    max_abs_a: the largest weight magnitude in a-units (``64 * |w_real|``).
    """
    if not max_abs_a > 0 or not math.isfinite(max_abs_a):
        return 0
    e = math.ceil(math.log2(max_abs_a / loihi.WEIGHT_MAX))
    # guard against log2 rounding at exact powers of two
    while max_abs_a / 2.0 ** e > loihi.WEIGHT_MAX:
        e += 1
    return int(min(max(e, WEIGHT_EXP_MIN), WEIGHT_EXP_MAX))


def quantize_weight(w_real: torch.Tensor, exp: int | None = None) -> tuple[torch.Tensor, int]:
    """Quantise one synapse group's real weights to (mantissa, shared exponent).

    Returns ``m`` (same shape, float tensor holding even integers in [-256, 254], gradient of
    ``64 w / 2**e`` by STE) and the int exponent ``e``, so that ``64 w ~= m * 2**e``.
    exp: None chooses ``e`` from the weights' range (``weight_exponent``); an int in
    ``[WEIGHT_EXP_MIN, WEIGHT_EXP_MAX]`` fixes it, and mantissas outside the 8-bit range clamp
    (straight-through, like the rounding).
    """
    w_a = w_real * float(loihi.STATE_SCALE)
    if exp is None:
        e = weight_exponent(float(w_a.detach().abs().max()) if w_a.numel() else 0.0)
    else:
        e = int(exp)
        if not WEIGHT_EXP_MIN <= e <= WEIGHT_EXP_MAX:
            raise ValueError(f"weight exponent {e} outside [{WEIGHT_EXP_MIN}, {WEIGHT_EXP_MAX}]")
    m = round_ste(w_a * 2.0 ** -e / 2.0) * 2.0
    return clamp_ste(m, loihi.WEIGHT_MIN, loihi.WEIGHT_MAX), e


def shift_floor(acc: torch.Tensor, exp: int) -> torch.Tensor:
    """The chip's ``acc << exp`` / arithmetic ``acc >> -exp`` on an integer-valued float tensor.

    ``acc`` may carry float error below 0.5 (it is rounded first); gradient is ``2**exp``.
    """
    acc = round_ste(acc)
    if exp >= 0:
        return acc * float(1 << exp)
    return floor_ste(acc * 2.0 ** exp)


def wrap(x: torch.Tensor, bits: int) -> torch.Tensor:
    """``loihi.wrap`` of an integer-valued float tensor, identity gradient (the wrap runs only
    when some value is out of range)."""
    with torch.no_grad():
        if x.numel() == 0 or float(x.abs().max()) < float(1 << (bits - 1)):
            return x
        wrapped = loihi.wrap(x.to(torch.int64), bits).to(x.dtype)
    return x + (wrapped - x).detach()


def wrap24(x: torch.Tensor) -> torch.Tensor:
    """Signed 24-bit two's-complement wrap (lava's Conv process sum), identity gradient."""
    return wrap(x, loihi.UV_BITS)


def wrap32(x: torch.Tensor) -> torch.Tensor:
    """Signed 32-bit two's-complement wrap (lava's int32 arrays), identity gradient."""
    return wrap(x, 32)


def quantize_input(x: torch.Tensor, frac_bits: int) -> torch.Tensor:
    """Host input quantisation ``clip(round(x * 2**frac_bits), int16)`` (no gradient), float64."""
    return torch.round(x.detach().double() * float(1 << frac_bits)).clamp_(INT16_MIN, INT16_MAX)


def quantize_encoder(w: torch.Tensor, b: torch.Tensor, frac_bits: int
                     ) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Quantise a (BN-folded) float encoder conv to the integer Encoder of mksgn.netgraph.

    w: (C_out, C_in, k_t, k_v) real weights, b: (C_out,) real bias; the encoder's output in a-units
    is ``64 * (conv(x, w) + b)``. Returns float64 integer-valued ``w_int``, ``b_int`` and ``shift``
    with ``(conv(x_int, w_int) + b_int) >> shift ~= 64 * (conv(x, w) + b)``,
    ``x_int = x * 2**frac_bits``. The shift is the largest that keeps ``|w_int| <= 2**11 - 1``.
    """
    w = w.double()
    b = b.double()
    wmax = float(w.detach().abs().max()) * loihi.STATE_SCALE
    if wmax > 0 and math.isfinite(wmax):
        shift = frac_bits + math.floor(math.log2(ENCODER_WEIGHT_MAX / wmax))
        while wmax * 2.0 ** (shift - frac_bits) > ENCODER_WEIGHT_MAX:
            shift -= 1
    else:
        shift = frac_bits
    shift = int(min(max(shift, 0), 30))
    scale_w = loihi.STATE_SCALE * 2.0 ** (shift - frac_bits)
    w_int = clamp_ste(round_ste(w * scale_w), -ENCODER_WEIGHT_MAX, ENCODER_WEIGHT_MAX)
    b_int = clamp_ste(round_ste(b * (loihi.STATE_SCALE * 2.0 ** shift)),
                      -(2.0 ** 31), 2.0 ** 31 - 1)
    return w_int, b_int, shift


def exact_dtype(bound: float, device: torch.device, training: bool) -> torch.dtype:
    """The float dtype in which integer sums up to ``bound`` are exact on ``device``.

    Training on CPU (and eval on CPU while ``bound < 2**24``) uses float32: PyTorch's CPU
    convolutions and matmuls are direct/GEMM, so integer partial sums below 2**24 are exact in any
    order. Eval on CUDA always uses float64 (with TF32 off, see ``exact_float_math``).
    """
    if device.type == "cpu" or training:
        return torch.float32 if bound < F32_EXACT else torch.float64
    return torch.float64


@contextlib.contextmanager
def exact_float_math():
    """Turn TF32 off for the duration (it would drop mantissa bits of integer sums on GPUs)."""
    if not torch.cuda.is_available():
        yield
        return
    old = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


def to_int(t: torch.Tensor) -> np.ndarray:
    """An integer-valued tensor as an int32 numpy array (checked)."""
    a = t.detach().cpu().double().numpy()
    r = np.round(a)
    if not np.array_equal(a, r):
        raise ValueError("tensor is not integer-valued")
    return r.astype(np.int32)
