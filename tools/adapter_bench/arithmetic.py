"""The arithmetic floor: multiply-adds per token of one train step, by formula, per variant.

>>> frozen = arithmetic_macs("frozen", [(4096, 1024)], 2048)
>>> frozen, arithmetic_macs("lora", [(4096, 1024)], 2048, [16]) / frozen
(8388608.0, 1.029296875)
"""

from __future__ import annotations

from collections.abc import Sequence


def arithmetic_macs(
    kind: str,
    shapes: Sequence[tuple[int, int]],
    tokens: int,
    settings: Sequence[tuple[int, int]] = (),
) -> float:
    """Multiply-adds per token of one train step over the adapted layers (input needs grad).

    ``kind``: "frozen" (2 m n: forward, input gradient), "lora" (``settings`` = ranks r:
    + 3 r (m + n)), "ssvdo" (``settings`` = (a, l, path) per layer, a = |J|, w = a + l, path as
    ``SSVDOLinear.forward_kind``; F = w n (a + m) forms W': the low-rank path adds forward
    n a + a w + m w and backward m a + 2 m l + 2 a w + n a; the hybrid path adds F per step,
    n a + m w + m l + a w + a l per token and min(F / tokens, n a + a w) for the input
    gradient; the dense path adds the weight gradient m n and 2 F per step), "peer" (``settings`` = (k, l): :class:`FullFactorSSVDO`; once per step it
    recomposes W' = U' diag(s') V'^T (r m n, plus n k^2 for V_k G and m (m - n) l for
    U_perp Q) and pushes the gradient of W' back through it (about twice that), spread over
    ``tokens``; per token a dense layer with its weight gradient, 3 m n). Elementwise work is
    not counted.
    """
    total = 0.0
    for i, (m, n) in enumerate(shapes):
        frozen = 2 * m * n
        if kind == "frozen":
            total += frozen
        elif kind == "lora":
            total += frozen + 3 * settings[i] * (m + n)
        elif kind == "ssvdo":
            a, ol, path = settings[i]
            w = a + ol
            form = w * n * (a + m)
            if path == "lowrank":
                total += frozen + (n * a + a * w + m * w) + (m * a + 2 * m * ol + 2 * a * w + n * a)
            elif path == "hybrid":
                per_token = n * a + m * w + m * ol + a * w + a * ol
                total += frozen + per_token + form / tokens + min(form / tokens, n * a + a * w)
            elif path == "dense":
                total += frozen + m * n + 2 * form / tokens
            else:
                raise ValueError(f"ssvdo path: unknown {path!r}")
        elif kind == "peer":
            k, ol = settings[i]
            r = min(m, n)
            per_step = 3 * (r * m * n + n * k * k + m * max(m - n, 0) * ol)
            total += 3 * m * n + per_step / tokens
        else:
            raise ValueError(f"kind: unknown {kind!r}")
    return total
