"""The learning rate and the pre-clip gradient norm as text fields and as scalars: the same figures on
headless `progress` and epoch lines, in exports and in TensorBoard. Torch-free; read at publication or at
an epoch's end, never per iteration."""

from __future__ import annotations

from typing import Optional

from trainmon.engine.core.format import general


def group_rates(rates: tuple[float, ...]) -> tuple[float, ...]:
    """Every parameter group's rate, in group order, when they differ; `()` when there is one rate."""
    return tuple(rates) if len(set(rates)) > 1 else ()


def rate_fields(lr: Optional[float], rates: tuple[float, ...], grad_norm: Optional[float],
                with_lr: bool = True) -> str:
    """` lr=0.05` (the first group's rate, `--` when unknown), then ` lr_groups=0.001,0.01` when the groups'
    rates differ and ` grad_norm=1.84` (the newest optimizer step's pre-clip total 2-norm) when known.
    `with_lr=False` leaves `lr=` out (a line that writes it already)."""
    text = f" lr={general(lr)}" if with_lr else ""
    differing = group_rates(rates)
    if differing:
        text += " lr_groups=" + ",".join(general(r) for r in differing)
    if grad_norm is not None:
        text += f" grad_norm={general(grad_norm)}"
    return text


def rate_scalars(lr: Optional[float], rates: tuple[float, ...], grad_norm: Optional[float]) -> dict[str, float]:
    """TensorBoard scalars: `lr`, `lr_group_<i>` (each group, when their rates differ), `grad_norm`;
    unknown ones left out."""
    scalars = {} if lr is None else {"lr": float(lr)}
    scalars.update({f"lr_group_{i}": float(r) for i, r in enumerate(group_rates(rates))})
    if grad_norm is not None:
        scalars["grad_norm"] = float(grad_norm)
    return scalars
