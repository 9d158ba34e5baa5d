"""What an adapter moved: rotation angles, singular-value shift and relative weight change.

Pure torch (no avalanche, no mlflow). All figures are computed in float64 from the layer's
own factors, so they do not depend on how the generators are parameterised (any
``parameterisation`` of :class:`~cl_ssvdo.ssvdo.layer.SSVDOLinear` is measured the same way):

- inner transform: the frozen right factors ``V_J`` (n, a) and the adapted ones
  ``V'_J = V_J G_full`` (n, a) give ``G_full = V_J^T V'_J`` (a x a, the inner rotation G padded
  with the identity). ``inner_dev = ||G - I||_F`` and ``inner_angle``: the largest angle
  between a direction ``V_J w`` and its image ``V_J G w``, ``2 asin(||G - I||_2 / 2)`` (exact
  for orthogonal G, whose eigenvalues are ``exp(+-i theta_j)``). The principal angles between
  the *subspaces* span(V_k) and span(V_k G) are all zero (G maps the span onto itself), so the
  rotation angle is the meaningful one;
- outer transform: principal angles between span(U_l) (the top-l left singular vectors of W0)
  and span(U'_l): ``outer_angle_max`` and ``outer_angle_mean`` (radians);
- ``sv_shift = ||s' - s|| / ||s||`` over *all* singular values: only those in J move and
  ``||s||_2 = ||W0||_F``, so no full SVD is needed;
- ``weight_change = ||W' - W0||_F / ||W0||_F`` (:func:`weight_change`, usable for any method:
  LoRA/DoRA/PiSSA through their merged weight, full fine-tuning, SSVD).

Example
-------
>>> layer = SSVDOLinear(torch.nn.Linear(8, 16), inner_ratio=0.5, outer_rank=2)
>>> d = ssvdo_diagnostics(layer)           # at init: nothing moved (float32 round-off)
>>> [round(x, 6) for x in (d.inner_angle, d.outer_angle_max, d.sv_shift, d.weight_change)]
[0.0, 0.0, 0.0, 0.0]
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch

from .layer import SUBSPACES, SSVDOLinear

__all__ = [
    "AUTO_ENERGY",
    "LayerDiagnostics",
    "choose_subspace",
    "principal_angles",
    "rotation_angle",
    "ssvdo_diagnostics",
    "step_angles",
    "top_energy_share",
    "weight_change",
]

# ``subspace: auto`` picks "tail" where the top-k singular values hold more than this share of
# the layer's squared Frobenius norm (see :func:`choose_subspace`).
AUTO_ENERGY = 0.5


def weight_change(w0: torch.Tensor, w1: torch.Tensor) -> float:
    """``||w1 - w0||_F / ||w0||_F`` (0.0 when both are zero), any equal shapes.

    Example
    -------
    >>> weight_change(torch.ones(2, 2), 1.5 * torch.ones(2, 2))
    0.5
    """
    if w0.shape != w1.shape:
        raise ValueError(f"weight_change: shapes differ, {tuple(w0.shape)} vs {tuple(w1.shape)}")
    a, b = w0.detach().double(), w1.detach().double()
    base = torch.linalg.vector_norm(a).item()
    diff = torch.linalg.vector_norm(b - a).item()
    if base == 0.0:
        return 0.0 if diff == 0.0 else math.inf
    return diff / base


def principal_angles(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Principal angles (radians, ascending) between span(a) and span(b).

    ``a`` (m, p) and ``b`` (m, q) must have orthonormal columns; returns ``min(p, q)`` angles.
    Cosines come from ``svdvals(a^T b)`` and sines from ``svdvals(b - a a^T b)``, paired
    (largest cosine with smallest sine) and combined by ``atan2``, which is accurate for small
    and large angles alike (``acos`` alone loses half the digits near 0).

    Example
    -------
    >>> e = torch.eye(3, dtype=torch.float64)
    >>> principal_angles(e[:, :1], (e[:, 0:1] + e[:, 1:2]) / 2**0.5).item()  # 45 degrees
    0.7853981633974483
    """
    if a.dim() != 2 or b.dim() != 2 or a.shape[0] != b.shape[0]:
        raise ValueError(
            f"principal_angles: expected (m, p) and (m, q), got {tuple(a.shape)}, {tuple(b.shape)}"
        )
    p = min(a.shape[1], b.shape[1])
    if p == 0:
        return torch.zeros(0, dtype=torch.float64)
    a, b = a.detach().double(), b.detach().double()
    # Make b the one with fewer columns: the residual of the narrower basis has rank <= p.
    if b.shape[1] > a.shape[1]:
        a, b = b, a
    cos = torch.linalg.svdvals(a.T @ b)[:p].clamp(0.0, 1.0)  # descending
    sin = torch.linalg.svdvals(b - a @ (a.T @ b))[:p].clamp(0.0, 1.0).flip(0)  # ascending
    return torch.atan2(sin, cos)


def rotation_angle(g: torch.Tensor) -> float:
    """Largest angle between a unit vector w and ``g w`` for an orthogonal ``g`` (k, k):
    ``2 asin(||g - I||_2 / 2)`` radians, in [0, pi]; 0.0 for k = 0.

    Example
    -------
    >>> c, s = math.cos(0.3), math.sin(0.3)
    >>> round(rotation_angle(torch.tensor([[c, -s], [s, c]], dtype=torch.float64)), 12)
    0.3
    """
    if g.dim() != 2 or g.shape[0] != g.shape[1]:
        raise ValueError(f"rotation_angle: expected a square matrix, got {tuple(g.shape)}")
    if g.shape[0] == 0:
        return 0.0
    g = g.detach().double()
    dev = torch.linalg.matrix_norm(g - torch.eye(g.shape[0], dtype=g.dtype), ord=2).item()
    return 2.0 * math.asin(min(dev / 2.0, 1.0))


@dataclass(frozen=True)
class LayerDiagnostics:
    """What one SSVD-O layer moved (angles in radians; see the module docstring)."""

    inner_dev: float
    inner_angle: float
    outer_angle_max: float
    outer_angle_mean: float
    sv_shift: float
    weight_change: float

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


@torch.no_grad()
def ssvdo_diagnostics(layer: SSVDOLinear) -> LayerDiagnostics:
    """Measure an unmerged ``SSVDOLinear`` (or a merged one that still holds W0)."""
    if layer.merged and layer._w0_backup is None:
        raise RuntimeError("ssvdo_diagnostics: the layer is merged and has no W0 backup")
    w0 = (layer._w0_backup if layer.merged else layer.base_layer.weight).detach().double()
    u_new, s_new, v_new = (t.detach().double() for t in layer.adapted_factors())
    u, s, v = (t.detach().double() for t in (layer.svd_U, layer.svd_s, layer.svd_V))
    g_full = v.T @ v_new
    inner_dev = torch.linalg.matrix_norm(g_full - torch.eye(g_full.shape[0], dtype=g_full.dtype))
    l_out = layer.outer_rank
    outer = principal_angles(u[:, :l_out], u_new[:, :l_out])
    norm_w0 = torch.linalg.vector_norm(w0).item()
    shift = torch.linalg.vector_norm(s_new - s).item()
    delta = layer.delta_weight().detach().double()
    return LayerDiagnostics(
        inner_dev=float(inner_dev),
        inner_angle=rotation_angle(g_full),
        outer_angle_max=float(outer.max()) if outer.numel() else 0.0,
        outer_angle_mean=float(outer.mean()) if outer.numel() else 0.0,
        sv_shift=shift / norm_w0 if norm_w0 else 0.0,
        weight_change=torch.linalg.vector_norm(delta).item() / norm_w0 if norm_w0 else 0.0,
    )


def step_angles(layer: SSVDOLinear) -> dict[str, float]:
    """Largest and RMS angles (radians) the adapter has turned, and the largest relative
    singular-value change: outer = principal angles between span(U_l) and span(U'_l); inner =
    rotation angles of G (eigenvalues exp(+-i phi)); ``s_rel`` = max |s' - s| / s over the inner
    components. All zero at initialisation (what the per-step bounds of docs/ssvdo.md bound)."""
    out = {"outer_max": 0.0, "outer_rms": 0.0, "inner_max": 0.0, "inner_rms": 0.0, "s_rel": 0.0}
    with torch.no_grad():
        U, s_new, _ = (t.double() for t in layer.adapted_factors())
        top = layer.outer_rank
        if top:
            theta = principal_angles(layer.svd_U[:, :top].double(), U[:, :top])
            out["outer_max"] = float(theta.max())
            out["outer_rms"] = float(theta.square().mean().sqrt())
        G = layer.inner_rotation()
        if G is not None:
            phi = torch.angle(torch.linalg.eigvals(G.double())).abs()
            out["inner_max"], out["inner_rms"] = float(phi.max()), float(phi.square().mean().sqrt())
        if layer.inner_rank:
            inner = slice(layer._inner_start, layer._inner_start + layer.inner_rank)
            s0 = layer.svd_s[inner].double()
            out["s_rel"] = float(((s_new[inner] - s0).abs() / s0).max())
    return out


def top_energy_share(weight: torch.Tensor, k: int) -> float:
    """Share of ``||weight||_F^2`` held by the top-``k`` singular values, in [0, 1].

    Example
    -------
    >>> top_energy_share(torch.diag(torch.tensor([3.0, 1.0])), 1)
    0.9
    """
    s2 = torch.linalg.svdvals(weight.detach().double()) ** 2
    total = float(s2.sum())
    return float(s2[:k].sum()) / total if total else 0.0


def choose_subspace(weight: torch.Tensor, inner_rank: int, energy: float = AUTO_ENERGY) -> str:
    """The rule behind ``subspace: auto`` for one layer (m, n) with inner rank k.

    Rotating k right singular vectors by an angle theta moves W by up to about
    ``theta * ||s_rotated||``: the step hits the layer hardest where the rotated components
    carry the energy. "tail" when the top-k singular values hold more than ``energy`` of
    ``||W||_F^2`` (the dominant directions are worth protecting, the tail is where a rotation
    costs the base domain least), else "top" (a flat spectrum: the top directions are no more
    precious than the rest and give the larger lever for learning).

    Example
    -------
    >>> choose_subspace(torch.diag(torch.tensor([10.0, 1.0, 1.0, 1.0])), 1)
    'tail'
    >>> choose_subspace(torch.eye(4), 1)
    'top'
    """
    if not 0.0 <= energy <= 1.0:
        raise ValueError(f"energy must be in [0, 1], got {energy!r}")
    if inner_rank <= 0:
        return SUBSPACES[0]
    return "tail" if top_energy_share(weight, inner_rank) > energy else "top"
