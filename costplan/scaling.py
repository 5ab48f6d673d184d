"""Scaling laws: predicted loss from parameters and tokens, and compute-optimal sizing.

The parametric form of Hoffmann et al. 2022 ("Training Compute-Optimal Large Language Models", §3.3,
Approach 3, eq. 2):

    L(N, D) = E + A / N^α + B / D^β

N counts every parameter, embeddings included (as Chinchilla does, and as `params.total` does); D counts
training tokens. Minimising L under the compute approximation C = 6·N·D has a closed form (§3.3, App. D.2):

    N_opt(C) = G·(C/6)^a,   D_opt(C) = (C/6)^b / G,   G = (α·A / (β·B))^(1/(α+β)),   a = β/(α+β),   b = α/(α+β)

Two constant sets are bundled, each with its source:

- `chinchilla`: the rounded constants Hoffmann et al. publish for Approach 3 (E = 1.69, A = 406.4, B = 410.7,
  α = 0.34, β = 0.28). They imply far more than the famous ~20 tokens per parameter (≈ 50 at 1e21 FLOPs,
  ≈ 93 at Gopher's 5.76e23), contradicting the paper's own Approaches 1 and 2 and the Chinchilla model itself
  (70B on 1.4T tokens, 20 per parameter): the text's rounding of the constants biases the law's predictions, and
  the fit stopped before convergence (Besiroglu et al. 2024, the abstract of its second version).
- `epoch` (the default): Besiroglu et al. 2024 ("Chinchilla Scaling: A replication attempt", arXiv
  2404.10102) re-extracted the data of Hoffmann's Figure 4 and refitted the same form: E = 1.8172,
  A = 482.01, B = 2085.43, α = 0.3478, β = 0.3658. The refit restores ~20 tokens per parameter
  (21.6 at 1e21 FLOPs, 18.4 at 5.76e23).

A user's own constants come from a YAML file with the fields of `ScalingLaw`. Mixture-of-experts models are
sized by their *active* parameters (see `params_for_law`); dense laws are only an approximation for them.
"""
from __future__ import annotations

import math

from costplan import sources, yamlio
from costplan.errors import CostplanError, SpecError, did_you_mean, printable, shown
from costplan.records import Record
from costplan.sections import InvalidInput, Section
from costplan.validation import Name, NonNegative, Positive

# Training FLOPs per parameter per token in the laws' compute accounting (Kaplan et al. 2020 §2.1; Hoffmann
# et al. 2022 §3.3): forward 2, backward 4, attention left out.
FLOPS_PER_PARAM_TOKEN = 6


class ScalingLaw(Section):
    """Constants of L(N, D) = E + A/N^α + B/D^β, with where they come from."""

    name: Name = "custom"
    E: NonNegative            # irreducible loss (nats per token)
    A: Positive
    B: Positive
    alpha: Positive
    beta: Positive
    source: str = "not given"

    def loss(self, params: float, tokens: float) -> float:
        """Predicted training loss (nats per token) of a model of `params` parameters trained on `tokens`."""
        return self._finite("the loss",
                            lambda: self.E + _term(self.A, params, self.alpha) + _term(self.B, tokens, self.beta))

    @property
    def _g(self) -> float:
        return self._finite("G",
                            lambda: (self.alpha * self.A / (self.beta * self.B)) ** (1 / (self.alpha + self.beta)))

    def compute_optimal(self, flops: float) -> tuple[float, float]:
        """(N_opt, D_opt) minimising the loss at `flops` = 6·N·D (Hoffmann et al. 2022, §3.3)."""
        a = self.beta / (self.alpha + self.beta)
        params = self._finite("the optimal size", lambda: self._g * (flops / FLOPS_PER_PARAM_TOKEN) ** a)
        return params, flops / (FLOPS_PER_PARAM_TOKEN * params)

    def optimal_tokens(self, params: float) -> float:
        """The tokens for which `params` is the compute-optimal size: D = (N/G)^(α/β) / G (the closed form
        above, solved for C and then for D)."""
        g = self._g
        return self._finite("the optimal tokens", lambda: (params / g) ** (self.alpha / self.beta) / g)

    def _finite(self, what: str, compute) -> float:  # noqa: ANN001 - a thunk
        """A result of the law's closed forms, or a CostplanError naming the constants when it leaves floating
        point (a user's exponents near zero put G = (αA/βB)^(1/(α+β)) far beyond 1e308)."""
        try:
            value = compute()
        except (OverflowError, ZeroDivisionError):
            value = math.inf
        if not math.isfinite(value) or value <= 0:
            raise CostplanError(f"--law {self.name}: {what} is not a finite positive number with E={self.E}, "
                                f"A={self.A}, B={self.B}, alpha={self.alpha}, beta={self.beta}; check the "
                                "constants")
        return value


def _term(coefficient: float, x: float, exponent: float) -> float:
    """coefficient / x^exponent; where x^exponent leaves floating point (an exponent of 1000), the same as
    coefficient · x^-exponent, which goes to 0 instead."""
    try:
        return coefficient / x ** exponent
    except OverflowError:
        return coefficient * x ** -exponent


LAWS: dict[str, ScalingLaw] = {
    "chinchilla": ScalingLaw(
        name="chinchilla", E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28,
        source="Hoffmann et al. 2022, Section 3.3 (Approach 3), published rounded constants"),
    "epoch": ScalingLaw(
        name="epoch", E=1.8172, A=482.01, B=2085.43, alpha=0.3478, beta=0.3658,
        source="Besiroglu et al. 2024 (Epoch AI), refit of Chinchilla Approach 3, arXiv 2404.10102"),
}
DEFAULT_LAW = "epoch"


def params_for_law(total: int, active: int) -> tuple[int, str]:
    """The N a dense law is given, and its name. A mixture-of-experts model is sized by its active
    parameters (embeddings included, convention 5): the laws' compute accounting C = 6·N·D only holds for
    the parameters a token touches, so compute-optimal sizing and tokens per parameter stay consistent; and it
    is the conservative reading, since routed models beat dense models of their active size (Clark et al. 2022,
    "Unified Scaling Laws for Routed Language Models", whose effective size lies between active and total).
    Dense laws are an approximation for such models either way."""
    return (total, "total") if active == total else (active, "active")


class Scaling(Record):
    """What a law predicts for one model trained on a number of tokens (`Estimate.scaling`)."""

    law: str
    loss: float                      # predicted training loss, nats per token
    params: int                      # the N given to the law
    params_convention: str           # "total", or "active" for mixture-of-experts models
    tokens_per_param: float          # training tokens / N
    optimal_tokens: float            # the tokens for which N is compute-optimal
    optimal_params: float            # the compute-optimal N for this model's 6·N·D


def predict(law: ScalingLaw, total: int, active: int, tokens: float) -> Scaling:
    """The law's loss for a model of `total` (`active`) parameters trained on `tokens`, and where that model
    stands against the compute-optimal frontier."""
    n, convention = params_for_law(total, active)
    optimal_params, _ = law.compute_optimal(FLOPS_PER_PARAM_TOKEN * n * tokens)
    return Scaling(law=law.name, loss=law.loss(n, tokens), params=n, params_convention=convention,
                   tokens_per_param=tokens / n, optimal_tokens=law.optimal_tokens(n), optimal_params=optimal_params)


def resolve(name: str | None = None, base_dir: str | None = None) -> ScalingLaw:
    """A bundled law by name, or a YAML file of constants by path (relative to the cwd, then base_dir), by the
    rule of costplan/sources.py."""
    if not name:
        return LAWS[DEFAULT_LAW]    # a bundled name, which no file shadows (every estimate without --law)
    found = sources.find(name, LAWS, [base_dir], option="--law ")
    if isinstance(found, str):
        return LAWS[found]
    if found is not None and sources.is_file(found):
        data = yamlio.read(found)
        if not isinstance(data, dict):
            raise SpecError(printable(found, cut=False), ["expected a mapping with E, A, B, alpha and beta"])
        try:
            return ScalingLaw.model_validate({"name": found.stem, **data})
        except InvalidInput as exc:
            raise SpecError(printable(found, cut=False), exc.messages) from None
    if found is not None:
        raise CostplanError(f"--law: scaling-law file {shown(name)} not found")
    raise CostplanError(f"--law: unknown scaling law {shown(name)}{did_you_mean(name, LAWS)}; one of "
                        f"{', '.join(LAWS)}, or a YAML file with E, A, B, alpha and beta")
