"""Per-sample gradients of a classifier's loss, vectorised, and PGD's gradient-based scores.

PGD (Ahn et al., "Mitigating dataset bias by using per-sample gradient"; the ICLR 2022 submission
in shared/papers/per-sample-gradient-debiasing_pgd.txt) scores every training sample by the
gradient of its cross-entropy loss under a biased model, ∇θ_i = ∂L_CE(x_i, y_i; θ_b)/∂θ:

- magnitude score (Eq. 1): M(i) = (1/‖∇θ_i‖₂) / Σ_j (1/‖∇θ_j‖₂) — majority samples, which the
  biased model fits, have small gradients and a large M;
- direction score (Eq. 1, Def. 4.1, App. G): D(i) = p_dir(i) / Σ_j p_dir(j), p_dir the density of a
  von Mises–Fisher distribution fitted to the unit gradients with the approximate MLE
  (û = Σv̂/‖Σv̂‖, r̄ = ‖Σv̂‖/N, κ̂ = r̄(d − r̄²)/(1 − r̄²), Banerjee et al. 2005) on the k
  dimensions with the largest Σ_i |∇θ_i^j| ("k-dominant sub-dimensions", Sec. 4.1; Table 4: k = 100);
- aggregated score (Sec. 4.2): the λ-weighted harmonic mean S(i) = (1 + λ)·M·D / (λ·M + D), and the
  sampling probability p_s(i) = C / S(i) with C = min_j S(j) (so the lowest-score sample has p = 1).

"The score is computed for each class separately" (Sec. 4.1): M and D are normalised, the
dominant dimensions chosen and the vMF fitted within each class.

Two vectorised ways to get per-sample gradients, never one backward pass per sample:

- closed form for the final linear layer (what the official code scores: fc.weight only,
  sumyeongahn/PGD @ 0265520 learner.py:302-318): the per-sample gradient of CE with respect to
  W (C×D) is the outer product δ_i ⊗ h_i, δ = softmax(logits) − onehot(y), h the layer's input.
  Its p-norm is ‖δ_i‖_p·‖h_i‖_p (Σ_jk |δ_j h_k|^p = Σ_j|δ_j|^p · Σ_k|h_k|^p), and any of its entries
  is one product δ_ij·h_ik, so neither the norms nor the k dominant entries need the N×C×D tensor;
- torch.func (functional_call + vmap + grad) for any chosen parameters, in chunks.

:func:`naive_per_sample_grads` is the one-backward-per-sample reference for tests and the speed
benchmark (benchmark/bench_per_sample.py), not for training.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

FC = "fc"  # parameter selector: the final linear layer's weight, closed form
EPS_NORM = 1e-8  # norms clamped like the official calc_mag/calc_vmf (scores.py:17, 30)
EPS_DIR = 1e-8  # relative vMF likelihood floor, official calc_vmf clamp (scores.py:26)


# --- which parameters ---------------------------------------------------------------------------

def final_linear(net: nn.Module) -> tuple[str, nn.Linear]:
    """The classifier's output layer: the last ``nn.Linear`` in module order, with its name."""
    found = [(n, m) for n, m in net.named_modules() if isinstance(m, nn.Linear)]
    if not found:
        raise ValueError(f"{type(net).__name__} has no nn.Linear layer; use the torch.func path (params='all')")
    return found[-1]


def select_params(net: nn.Module, params: str) -> list[str]:
    """Parameter names for a selector: ``"fc"`` (final linear weight), ``"all"``, or a comma list
    of name prefixes (``"g,f.8"``)."""
    names = [n for n, p in net.named_parameters() if p.requires_grad]
    if params == FC:
        return [f"{final_linear(net)[0]}.weight".lstrip(".")]
    if params == "all":
        return names
    prefixes = [p.strip() for p in params.split(",") if p.strip()]
    picked = [n for n in names if any(n == p or n.startswith(p + ".") for p in prefixes)]
    if not picked:
        raise ValueError(f"no parameter matches {params!r}; parameters: {names}")
    return picked


# --- per-sample gradients ------------------------------------------------------------------------

def final_layer_inputs(net: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(h, logits): the input of the final linear layer and the network's output, one forward."""
    _, fc = final_linear(net)
    seen: dict[str, torch.Tensor] = {}

    def hook(module, inputs, output):
        seen["h"], seen["out"] = inputs[0], output

    handle = fc.register_forward_hook(hook)
    try:
        logits = net(x)
    finally:
        handle.remove()
    if "h" not in seen or seen["out"].shape != logits.shape:
        raise ValueError(f"the last nn.Linear of {type(net).__name__} is not its output layer; "
                         "use the torch.func path (params='all' or name prefixes)")
    return seen["h"].flatten(1), logits


def ce_residual(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """δ = softmax(logits) − onehot(y) = ∂L_CE/∂logits for each sample."""
    return F.softmax(logits, dim=1) - F.one_hot(y, logits.shape[1]).to(logits.dtype)


def linear_grad_norm(delta: torch.Tensor, h: torch.Tensor, p: float = 2.0) -> torch.Tensor:
    """‖δ_i ⊗ h_i‖_p = ‖δ_i‖_p · ‖h_i‖_p (the p-"norm" is Σ|·|^p to the 1/p, also for p < 1)."""
    return torch.linalg.vector_norm(delta, ord=p, dim=1) * torch.linalg.vector_norm(h, ord=p, dim=1)


def func_per_sample_grads(net: nn.Module, names: list[str], x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-sample CE gradients of the parameters ``names``, flattened and concatenated (B×P), with
    torch.func: ``vmap(grad(loss of one sample))`` over the batch. ``net`` should be in eval mode
    (batch norm with running statistics, no dropout), as for scoring."""
    from torch.func import functional_call, grad, vmap

    chosen = {n: p.detach() for n, p in net.named_parameters() if n in names}
    frozen = {n: p.detach() for n, p in net.named_parameters() if n not in chosen}
    buffers = {n: b.detach() for n, b in net.named_buffers()}

    def loss_one(params, xi, yi):
        out = functional_call(net, (params, frozen, buffers), (xi.unsqueeze(0),))
        return F.cross_entropy(out, yi.unsqueeze(0))

    g = vmap(grad(loss_one), in_dims=(None, 0, 0))(chosen, x, y)
    return torch.cat([g[n].reshape(len(x), -1) for n in names], dim=1)


def naive_per_sample_grads(net: nn.Module, names: list[str], x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Reference: one backward pass per sample (as the official code does, learner.py:302-318).
    For tests and the speed benchmark only."""
    params = dict(net.named_parameters())
    out = []
    for i in range(len(x)):
        loss = F.cross_entropy(net(x[i:i + 1]), y[i:i + 1])
        grads = torch.autograd.grad(loss, [params[n] for n in names])
        out.append(torch.cat([g.reshape(-1) for g in grads]))
    return torch.stack(out)


# --- gradient statistics over a data set ---------------------------------------------------------

@dataclass
class GradStats:
    """What the scores need from the per-sample gradients of N samples.

    Attributes:
        norm: ‖∇θ_i‖_p, shape N (float64).
        sub: ∇θ_i restricted to the k dominant dimensions of sample i's class, N×k (float64).
        dims: the dominant dimensions per class, (classes)×k flat parameter indices.
    """

    norm: torch.Tensor
    sub: torch.Tensor
    dims: torch.Tensor


Batches = Iterable[tuple[torch.Tensor, torch.Tensor]]
SCORE_BATCH = 1024  # samples per scoring forward pass (memory only; results do not depend on it)


class Rebatch:
    """Re-iterable (x, y) batches of an engine :class:`~benchmark.engine.Loader`'s samples, in
    index order and un-augmented (what the scores and the two-pass torch.func path read)."""

    def __init__(self, loader, batch_size: int = SCORE_BATCH, indices: torch.Tensor | None = None):
        self.loader, self.batch_size = loader, batch_size
        self.indices = torch.arange(len(loader), device=loader.device) if indices is None else indices.to(loader.device)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for b in self.loader.batches(self.indices, self.batch_size, augment=False):
            yield b.x, b.y


def dominant_dims(abs_sum: torch.Tensor, k: int) -> torch.Tensor:
    """Per class, the k flat dimensions with the largest Σ_i |∇θ_i^j| (PGD Sec. 4.1)."""
    k = min(k, abs_sum.shape[1])
    return torch.topk(abs_sum, k, dim=1, sorted=True).indices


@torch.no_grad()
def closed_form_stats(net: nn.Module, batches: Batches, num_classes: int, k: int, p: float = 2.0,
                      want_sub: bool = True) -> GradStats:
    """:class:`GradStats` of the final linear layer's weight, in closed form (one forward pass).

    Args:
        net: the (biased) model, in the mode it should be scored in (eval).
        batches: an iterable of (x, y) batches covering the data set in order.
        num_classes: classes of y (rows of the per-class statistics).
        k: dominant dimensions for the direction score.
        p: norm order for ``norm``.
        want_sub: also gather the dominant-dimension sub-vectors (needed by the direction score).
    """
    hs, ds, ys = [], [], []
    for x, y in batches:
        h, logits = final_layer_inputs(net, x)
        hs.append(h.double())
        ds.append(ce_residual(logits.double(), y))  # float64: a confident softmax stays off exactly 0
        ys.append(y)
    h, delta, y = torch.cat(hs), torch.cat(ds), torch.cat(ys)
    norm = linear_grad_norm(delta, h, p)
    c, d = delta.shape[1], h.shape[1]
    if not want_sub:
        return GradStats(norm, norm.new_zeros(len(y), 0), torch.zeros(num_classes, 0, dtype=torch.long))
    # Σ_{i in class n} |δ_i|ᵀ|h_i| for every class n at once: (n·C × N) @ (N × D).
    onehot = F.one_hot(y, num_classes).to(h.dtype)
    left = (onehot[:, :, None] * delta.abs()[:, None, :]).reshape(len(y), num_classes * c)
    abs_sum = (left.T @ h.abs()).reshape(num_classes, c * d)
    dims = dominant_dims(abs_sum, k)
    rows, cols = dims[y] // d, dims[y] % d  # N×k: weight row (class of δ) and column (feature)
    sub = delta.gather(1, rows) * h.gather(1, cols)
    return GradStats(norm, sub, dims)


def func_stats(net: nn.Module, names: list[str], batches: Batches, num_classes: int, k: int,
               p: float = 2.0, chunk: int = 256) -> GradStats:
    """:class:`GradStats` for any parameters with torch.func, in two passes over ``batches``
    (which must be re-iterable and give the same data in the same order): the first accumulates
    norms and per-class Σ|∇θ|, the second gathers the dominant dimensions. Memory: chunk×P."""
    norms, ys = [], []
    abs_sum = None
    for x, y in _chunks(batches, chunk):
        g = func_per_sample_grads(net, names, x, y)
        norms.append(torch.linalg.vector_norm(g.double(), ord=p, dim=1))
        ys.append(y)
        part = torch.zeros(num_classes, g.shape[1], dtype=g.dtype, device=g.device).index_add_(0, y, g.abs())
        abs_sum = part if abs_sum is None else abs_sum + part
    dims = dominant_dims(abs_sum, k)
    subs = []
    for x, y in _chunks(batches, chunk):
        g = func_per_sample_grads(net, names, x, y)
        subs.append(g.gather(1, dims[y]).double())
    return GradStats(torch.cat(norms), torch.cat(subs), dims)


def naive_stats(net: nn.Module, names: list[str], x: torch.Tensor, y: torch.Tensor, num_classes: int,
                k: int, p: float = 2.0) -> GradStats:
    """Reference :class:`GradStats` from :func:`naive_per_sample_grads` (tests, benchmark)."""
    g = naive_per_sample_grads(net, names, x, y)
    abs_sum = torch.zeros(num_classes, g.shape[1], dtype=g.dtype, device=g.device).index_add_(0, y, g.abs())
    dims = dominant_dims(abs_sum, k)
    return GradStats(torch.linalg.vector_norm(g.double(), ord=p, dim=1), g.gather(1, dims[y]).double(), dims)


def _chunks(batches: Batches, size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    for x, y in batches:
        for i in range(0, len(y), size):
            yield x[i:i + size], y[i:i + size]


# --- scores --------------------------------------------------------------------------------------

def _class_sum(v: torch.Tensor, y: torch.Tensor, num_classes: int) -> torch.Tensor:
    return torch.zeros(num_classes, *v.shape[1:], dtype=v.dtype, device=v.device).index_add_(0, y, v)


def magnitude_score(norm: torch.Tensor, y: torch.Tensor, num_classes: int) -> torch.Tensor:
    """M(i) = (1/‖∇θ_i‖) / Σ_{j in class y_i} (1/‖∇θ_j‖) (PGD Eq. 1, per class)."""
    inv = 1.0 / norm.double().clamp_min(EPS_NORM)
    return inv / _class_sum(inv, y, num_classes)[y]


def vmf_log_density(sub: torch.Tensor, y: torch.Tensor, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """κ̂ ûᵀv̂_i per sample (the vMF log-density up to the class's log C_d(κ̂)) and κ̂ per class.

    v̂_i = ∇θ_i/‖∇θ_i‖ on the dominant dimensions; û, κ̂ the approximate MLE of PGD App. G (Banerjee
    et al., 2005) fitted within each class: r̄ = ‖Σv̂‖/N, κ̂ = r̄(d − r̄²)/(1 − r̄²). A zero
    gradient has no direction; it gets the class's largest attainable value κ̂ (a sample the model
    fits exactly is as typical as can be), not the 0 its zero vector would give."""
    v = sub.double()
    norm = torch.linalg.vector_norm(v, dim=1, keepdim=True)
    v = v / norm.clamp_min(EPS_NORM)
    s = _class_sum(v, y, num_classes)
    n = torch.bincount(y, minlength=num_classes).double().clamp_min(1)
    s_norm = torch.linalg.vector_norm(s, dim=1)
    r = (s_norm / n).clamp(max=1 - 1e-12)
    d = v.shape[1]
    kappa = r * (d - r ** 2) / (1 - r ** 2)
    u = s / s_norm.clamp_min(EPS_NORM)[:, None]
    logf = kappa[y] * (u[y] * v).sum(1)
    return torch.where(norm.squeeze(1) > 0, logf, kappa[y]), kappa


def direction_score(sub: torch.Tensor, y: torch.Tensor, num_classes: int) -> torch.Tensor:
    """D(i) = p_dir(i) / Σ_{j in class y_i} p_dir(j) (PGD Eq. 1); the class's normaliser C_d(κ̂)
    cancels. Relative densities below 1e-8 of the class maximum are floored there, as the official
    calc_vmf does (sumyeongahn/PGD @ 0265520 trainer/module/scores.py:24-27)."""
    logf, _ = vmf_log_density(sub, y, num_classes)
    top = torch.full((num_classes,), -torch.inf, dtype=logf.dtype, device=logf.device)
    top = top.scatter_reduce(0, y, logf, reduce="amax")
    rel = torch.exp(logf - top[y]).clamp(EPS_DIR, 1.0)
    return rel / _class_sum(rel, y, num_classes)[y]


def harmonic_score(m: torch.Tensor, d: torch.Tensor, lam: float = 1.0) -> torch.Tensor:
    """S(i) = (1 + λ)·M·D / (λ·M + D): λ = 1 is the plain harmonic mean, λ = 0 gives M alone and
    λ → ∞ gives D alone (PGD Sec. 4.2; Table 11 ablates λ ∈ {0, 1, 10, 100})."""
    return (1.0 + lam) * m * d / (lam * m + d)


def acceptance_probability(s: torch.Tensor) -> torch.Tensor:
    """p_s(i) = C / S(i), C = min_j S(j): the rejection sampler's acceptance (PGD Sec. 4.2)."""
    return s.min() / s


# --- the sampler -------------------------------------------------------------------------------

def rejection_sample(accept: torch.Tensor, n: int, generator: torch.Generator, max_draws: int = 1 << 22) -> torch.Tensor:
    """PGD Algorithm 1, vectorised: propose i ~ U{0..N−1} and u ~ U(0, 1), keep i when u ≤ p(i),
    until ``n`` samples are kept. Proposals are drawn in blocks from ``generator`` (on the CPU), so
    the result is a pure function of the generator's state. The kept stream, cut into batches,
    is exactly the batches Algorithm 1 builds one by one.

    Args:
        accept: acceptance probabilities in (0, 1], shape N (on the CPU).
        n: number of indices to return.
        generator: a CPU generator.
    """
    accept = accept.detach().to("cpu", torch.float64)
    if not (accept.numel() and float(accept.max()) > 0):
        raise ValueError("rejection sampling needs at least one positive acceptance probability")
    rate = float(accept.mean())
    out, got = [], 0
    while got < n:
        draws = int(min(max((n - got) / rate * 1.1 + 64, 1024), max_draws))
        i = torch.randint(len(accept), (draws,), generator=generator)
        u = torch.rand(draws, generator=generator, dtype=torch.float64)
        kept = i[u <= accept[i]][: n - got]
        out.append(kept)
        got += len(kept)
    return torch.cat(out)


def categorical_sample(weight: torch.Tensor, n: int, generator: torch.Generator) -> torch.Tensor:
    """``n`` i.i.d. draws with probability ∝ ``weight``, by inverse CDF as the official loader does
    (trainer/module/data.py:50,59-64: ``sum(rand > cumsum(prob))``)."""
    cdf = torch.cumsum(weight.detach().to("cpu", torch.float64), 0)
    u = torch.rand(n, generator=generator, dtype=torch.float64) * cdf[-1]
    return torch.searchsorted(cdf, u).clamp(max=len(cdf) - 1)  # first i with cdf[i] >= u
