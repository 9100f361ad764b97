"""Count distributions for demand, in torch, seeded by an explicit ``torch.Generator``.

Demand is negative binomial with mean ``mu`` and dispersion ``r`` (variance ``mu + mu**2 / r``),
sampled as a gamma-Poisson mixture. ``torch.distributions`` takes no generator, so the gamma
draw is Marsaglia-Tsang (2000) on generator-fed normals/uniforms: the same seed gives the same
demand on any batch size split the same way, on CPU or GPU.
"""

from __future__ import annotations

import numpy as np
import torch


def sample_gamma(shape: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Gamma(shape, scale=1) draws, one per element of ``shape`` (> 0), Marsaglia-Tsang."""
    shape = shape.to(torch.float64)
    boost = shape < 1.0
    a = torch.where(boost, shape + 1.0, shape)
    d = a - 1.0 / 3.0
    c = 1.0 / torch.sqrt(9.0 * d)
    out = torch.empty_like(a)
    todo = torch.ones_like(a, dtype=torch.bool)
    # Acceptance is > 95% per round for a >= 1; 64 rounds never run out in practice.
    for _ in range(64):
        if not bool(todo.any()):
            break
        x = torch.randn(a.shape, generator=generator, dtype=torch.float64, device=a.device)
        u = torch.rand(a.shape, generator=generator, dtype=torch.float64, device=a.device)
        v = (1.0 + c * x) ** 3
        ok = (v > 0) & (
            torch.log(u.clamp_min(1e-300))
            < 0.5 * x * x + d - d * v + d * torch.log(v.clamp_min(1e-300))
        )
        take = todo & ok
        out = torch.where(take, d * v, out)
        todo = todo & ~ok
    out = torch.where(todo, a, out)  # unreachable fallback: the mean
    u = torch.rand(a.shape, generator=generator, dtype=torch.float64, device=a.device)
    out = torch.where(boost, out * u.clamp_min(1e-300) ** (1.0 / shape.clamp_min(1e-12)), out)
    return out


def sample_negative_binomial(
    mean: torch.Tensor, dispersion: torch.Tensor, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Negative-binomial counts with the given mean and dispersion (float64, same shape).

    >>> g = torch.Generator().manual_seed(0)
    >>> x = sample_negative_binomial(torch.full((20000,), 10.0), torch.tensor(5.0), g)
    >>> abs(x.mean().item() - 10) < 0.2, abs(x.var().item() - 30) < 2.0
    (True, True)
    """
    mean = mean.to(torch.float64)
    dispersion = torch.as_tensor(dispersion, dtype=torch.float64, device=mean.device)
    dispersion = torch.broadcast_to(dispersion, mean.shape)
    rate = sample_gamma(dispersion, generator) * (mean.clamp_min(0.0) / dispersion)
    return torch.poisson(rate, generator=generator)


def negative_binomial_pmf(
    mean: torch.Tensor, dispersion: torch.Tensor, support: int
) -> torch.Tensor:
    """P(D = k) for k = 0..support-1, shape ``mean.shape + (support,)``, float64.

    >>> p = negative_binomial_pmf(torch.tensor([4.0]), torch.tensor([3.0]), 200)
    >>> round(p.sum().item(), 9), round((p * torch.arange(200)).sum().item(), 6)
    (1.0, 4.0)
    """
    mean = mean.to(torch.float64).clamp_min(1e-12)
    r = torch.as_tensor(dispersion, dtype=torch.float64, device=mean.device)
    r = torch.broadcast_to(r, mean.shape)
    k = torch.arange(support, dtype=torch.float64, device=mean.device)
    mean, r = mean.unsqueeze(-1), r.unsqueeze(-1)
    log_p = (
        torch.lgamma(k + r)
        - torch.lgamma(r)
        - torch.lgamma(k + 1.0)
        + r * torch.log(r / (r + mean))
        + k * torch.log(mean / (r + mean))
    )
    return torch.exp(log_p)


def negative_binomial_icdf(
    u: torch.Tensor, mean: torch.Tensor, dispersion: torch.Tensor, chunk: int = 32
) -> torch.Tensor:
    """Inverse CDF: the smallest ``k`` with ``P(D <= k) >= u`` (float64 counts).

    Feeding the same uniforms ``u`` to different policies gives common random numbers that
    are monotone in the mean (a deeper discount never lowers the realised demand).

    The pmf comes from the recurrence ``p(k+1) = p(k) (k + r) / (k + 1) * mean / (r + mean)``
    (one log per term instead of three lgamma: ~6x faster than a full pmf table at batch 1024,
    11 vs 73 ms measured), in chunks of ``chunk`` values of ``k``; a row leaves the walk once
    its CDF has passed its ``u`` or it reaches its own bound ``mean + 12 sd + 16``, so its
    draw does not depend on the other rows of the batch. After ``64 * chunk`` values the
    chunks double at every step (up to ~4M values per step), so means in the thousands take
    a few dozen steps instead of thousands; the draws are the same.

    >>> u = torch.rand(50000, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    >>> x = negative_binomial_icdf(u, torch.full((50000,), 7.0), torch.tensor(4.0))
    >>> abs(x.mean().item() - 7.0) < 0.1
    True
    """
    mean = mean.to(torch.float64).clamp_min(1e-12)
    r = torch.broadcast_to(
        torch.as_tensor(dispersion, dtype=torch.float64, device=mean.device), mean.shape
    )
    u = torch.broadcast_to(u.to(device=mean.device, dtype=torch.float64), mean.shape)
    shape = mean.shape
    mean, r, u = mean.reshape(-1), r.reshape(-1), u.reshape(-1)
    log_q = torch.log(mean / (r + mean))
    log_pmf = r * torch.log(r / (r + mean))  # log P(D = 0)
    cap = torch.ceil(mean + 12.0 * torch.sqrt(mean + mean * mean / r)) + 16.0
    count = torch.zeros_like(mean)
    # Rows still searching, compacted: (row index, r, log_q, log_pmf, cdf, u, cap).
    rows = torch.arange(mean.shape[0], device=mean.device)
    cdf = torch.zeros_like(mean)
    offsets = torch.arange(chunk, dtype=torch.float64, device=mean.device)
    k0, grow_from, base = 0, 64 * chunk, chunk
    while rows.numel():
        k = (k0 + offsets).unsqueeze(0)
        ratio = torch.log((k + r.unsqueeze(1)) / (k + 1.0)) + log_q.unsqueeze(1)
        logs = torch.cat([log_pmf.unsqueeze(1), log_pmf.unsqueeze(1) + ratio.cumsum(1)], dim=1)
        chunk_cdf = cdf.unsqueeze(1) + torch.exp(logs[:, :-1]).cumsum(1)
        count[rows] += ((chunk_cdf < u.unsqueeze(1)) & (k < cap.unsqueeze(1))).sum(dim=1)
        cdf, log_pmf = chunk_cdf[:, -1], logs[:, -1]
        k0 += chunk
        keep = (cdf < u) & (k0 < cap)
        rows, r, log_q, log_pmf, cdf, u, cap = (
            x[keep] for x in (rows, r, log_q, log_pmf, cdf, u, cap)
        )
        if k0 >= grow_from and rows.numel():
            # Larger chunks for the long walks, at most ~4M values per step.
            chunk = min(2 * chunk, max(base, 2**22 // rows.numel()))
            offsets = torch.arange(chunk, dtype=torch.float64, device=mean.device)
    return count.reshape(shape)


def expected_sales(
    mean: torch.Tensor, dispersion: torch.Tensor, stock: torch.Tensor, budget: int = 2**22
) -> torch.Tensor:
    """``E[min(D, stock)]`` for ``D ~ NB(mean, dispersion)``, elementwise over any shape
    (float64): the units a period sells when its stock caps demand. A ``stock`` of NaN
    (unknown) or inf gives the mean; a fractional stock counts its whole units (sales are
    counts).

    Exact: ``s - sum_{k < s} (s - k) P(D = k)`` with ``s = floor(stock)``, from the pmf, for
    the elements whose stock can bind (below ``mean + 12 sd + 16``, the bound
    :func:`negative_binomial_icdf` walks to); beyond it the mean (the tail past it is
    negligible). Elements go in chunks of at most ``budget`` pmf values, so the memory
    stays bounded for large stocks.

    >>> s = expected_sales(torch.tensor([4.0, 4.0, 4.0]), torch.tensor(3.0),
    ...                    torch.tensor([0.0, 1.0, float("nan")]))
    >>> [round(v, 4) for v in s.tolist()]
    [0.0, 0.9213, 4.0]
    """
    mean = mean.to(torch.float64).clamp_min(0.0)
    r = torch.as_tensor(dispersion, dtype=torch.float64, device=mean.device)
    stock = torch.as_tensor(stock, dtype=torch.float64, device=mean.device)
    shape = torch.broadcast_shapes(mean.shape, r.shape, stock.shape)
    mean, r, stock = (x.broadcast_to(shape).reshape(-1) for x in (mean, r, stock))
    out = mean.clone()
    cap = torch.ceil(mean + 12.0 * torch.sqrt(mean + mean * mean / r)) + 16.0
    binds = torch.nonzero(torch.isfinite(stock) & (stock < cap)).squeeze(1)
    whole = stock[binds].clamp_min(0.0).floor()
    order = torch.argsort(whole)  # similar stocks share a chunk's pmf length
    binds, whole = binds[order], whole[order]
    support_of = np.maximum(whole.cpu().numpy().astype(np.int64), 1)  # ascending
    start = 0
    while start < len(support_of):
        # the longest run from start whose rows x its largest stock fit the budget
        count = np.arange(1, len(support_of) - start + 1)
        end = start + max(1, int(np.searchsorted(count * support_of[start:] > budget, True)))
        support = int(support_of[end - 1])
        idx, s = binds[start:end], whole[start:end]
        pmf = negative_binomial_pmf(mean[idx], r[idx], support)
        k = torch.arange(support, dtype=torch.float64, device=mean.device)
        short = (s.unsqueeze(1) - k).clamp_min(0.0)  # (stock - k) where k < stock, else 0
        out[idx] = s - (short * pmf).sum(dim=1)
        start = end
    return out.reshape(shape)
