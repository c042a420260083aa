"""The retraining scaling law of BlockTrainer (Zhang, Han, Liu, "Cloud-Edge Collaborative Retraining of Foundation
Models at the Block Granularity", Acta Electronica Sinica 2025, §3.2): the accuracy an edge model reaches after q
retraining iterations, as a function of which blocks are compressed and of statistics of the target domain.

Two forms, fitted on data points (one row per logged accuracy; columns `trial`, `iteration`, `accuracy`,
`c0`..`c{N-1}` with 1 = block compressed, and one column per domain statistic):

* ``additive`` — the released code's form (ConvertNet `EdgeScalingLaw`)::

      acc = θ0 + Σ_s θ_s·stat_s + b·(q+1)^c + Σ_k δ_k·c_k

  The code sums saturating terms nsl(x) = a + b·x^c: one in q+1, one in the samples q·batch, one per block in its
  parameter count P_k. P_k takes only two values (full or compressed), so each block's term is exactly a constant
  (folded into θ0) plus δ_k·c_k. The samples term is collinear with q at a fixed batch size and is dropped.
* ``multiplicative`` — the paper's form, acc = Π_k β_k·P_k^{γ_k} × β_q·q^{γ_q}::

      acc = exp(θ0 + Σ_s θ_s·stat_s) · (q+1)^γ · Π_k ρ_k^{c_k}

  For the same reason β_k·P_k^{γ_k} collapses to a constant times ρ_k = (P_comp/P_full)^{γ_k} when block k is
  compressed; q becomes q+1 so that q = 0 is defined.

Departures from the original: the paper's "parameter adapter" (an MLP from domain statistics and hardest samples
to the law's β/γ; in the code, from the Fréchet distance, a loss and feature moments to all parameters) is
replaced by the linear θ_s terms on a few named statistics; the fit is nonlinear least squares
(scipy.optimize.least_squares) instead of 40,000 Adam steps.

Parameter layout of ``ScalingLaw.params`` (S statistics, N blocks):
additive ``[θ0, θ_1..θ_S, b, c, δ_0..δ_{N-1}]``; multiplicative ``[θ0, θ_1..θ_S, γ, ln ρ_0..ln ρ_{N-1}]``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.optimize import least_squares

FORMS = ("additive", "multiplicative")
CURVE_PARAMS = {"additive": ("b", "c"), "multiplicative": ("gamma",)}
BLOCK_PARAM = {"additive": "delta", "multiplicative": "log_rho"}
MAX_EVALUATIONS = 200  # of the additive fit's residuals; see _fit_additive
# Iterative trust-region steps: the default dense SVD of the (rows, params) Jacobian each step is ~100× slower when
# threaded BLAS shares its cores.
SOLVER = {"tr_solver": "lsmr"}


def _check_form(form: str) -> None:
    if form not in FORMS:
        raise ValueError(f"form={form!r}; expected one of {FORMS}")


@dataclass
class ScalingLaw:
    """A fitted law: `predict(q, compressed, stats)` is the accuracy after q iterations of that block plan."""

    form: str
    num_blocks: int
    stat_names: tuple[str, ...]
    params: np.ndarray

    def __post_init__(self):
        _check_form(self.form)
        self.stat_names = tuple(self.stat_names)
        self.params = np.asarray(self.params, dtype=float)
        if self.params.shape != (len(self.names),):
            raise ValueError(f"params has shape {self.params.shape}; {self.form} law needs ({len(self.names)},)")

    @property
    def names(self) -> tuple[str, ...]:
        """One name per entry of `params`, e.g. ('theta0', 'theta_fd', 'b', 'c', 'delta_0', ...)."""
        stats = tuple(f"theta_{s}" for s in self.stat_names)
        blocks = tuple(f"{BLOCK_PARAM[self.form]}_{k}" for k in range(self.num_blocks))
        return ("theta0", *stats, *CURVE_PARAMS[self.form], *blocks)

    def _parts(self) -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
        """(θ0, θ_s (S,), curve params, block params (N,))."""
        s, n = len(self.stat_names), self.num_blocks
        p = self.params
        return p[0], p[1 : 1 + s], p[1 + s : len(p) - n], p[len(p) - n :]

    def _evaluate(self, iterations, compressed, stats) -> np.ndarray:
        """The law row by row: iterations (R,), compressed (R, N), stats (R, S) -> (R,)."""
        theta0, theta, curve, block = self._parts()
        return _combine(self.form, curve, theta0 + stats @ theta + compressed @ block, np.log1p(iterations))

    def predict(self, iterations, compressed, stats) -> np.ndarray:
        """iterations (J,), compressed (P, N) or (N,) 0/1, stats (S,) -> accuracy (P, J)."""
        return self.predictor(stats)(iterations, compressed)

    def predictor(self, stats) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
        """Bind the domain statistics: f(iterations (J,), compressed (P, N)) -> (P, J), the planner's `predict`."""
        stats = np.asarray(stats, dtype=float)
        if stats.shape != (len(self.stat_names),):
            raise ValueError(f"stats has shape {stats.shape}; expected ({len(self.stat_names)},) for {self.stat_names}")
        theta0, theta, curve, block = self._parts()
        offset = theta0 + stats @ theta

        def predict(iterations, compressed) -> np.ndarray:
            compressed = np.atleast_2d(np.asarray(compressed, dtype=float))  # (P, N)
            if compressed.shape[1] != self.num_blocks:
                raise ValueError(f"compressed has {compressed.shape[1]} blocks; the law has {self.num_blocks}")
            rows = (offset + compressed @ block)[:, None]  # (P, 1)
            log_q = np.log1p(np.asarray(iterations, dtype=float))[None, :]
            # Accuracy is a probability: clipping keeps a law extrapolated to unseen statistics from promising
            # more than 1 or less than 0 (the multiplicative form grows exponentially in the statistics).
            return np.clip(_combine(self.form, curve, rows, log_q), 0.0, 1.0)

        return predict

    def to_dict(self) -> dict:
        return {
            "form": self.form,
            "num_blocks": self.num_blocks,
            "stat_names": list(self.stat_names),
            "params": self.params.tolist(),
        }

    @classmethod
    def from_dict(cls, d: dict) -> ScalingLaw:
        return cls(d["form"], int(d["num_blocks"]), tuple(d["stat_names"]), np.asarray(d["params"], dtype=float))

    @classmethod
    def fit(cls, points: pd.DataFrame, form: str, num_blocks: int, stat_names: Sequence[str]) -> ScalingLaw:
        """Least-squares fit of one form to the data points (see the module docstring for the forms)."""
        _check_form(form)
        q, compressed, stats, acc = _columns(points, num_blocks, stat_names)
        fit = _fit_additive if form == "additive" else _fit_multiplicative
        return cls(form, num_blocks, tuple(stat_names), fit(q, compressed, stats, acc))


def _combine(form: str, curve: np.ndarray, offset, log_q):
    """The law from its linear part `offset` and ln(q+1), broadcast together."""
    if form == "additive":
        return offset + curve[0] * np.exp(curve[1] * log_q)
    return np.exp(offset + curve[0] * log_q)


def _columns(points: pd.DataFrame, num_blocks: int, stat_names: Sequence[str]):
    """Validated arrays: iterations (R,), compressed (R, N), stats (R, S), accuracy (R,)."""
    blocks = [f"c{k}" for k in range(num_blocks)]
    needed = ["trial", "iteration", "accuracy", *blocks, *stat_names]
    missing = [c for c in needed if c not in points.columns]
    if missing:
        raise ValueError(f"data points lack columns {missing}")
    acc = points["accuracy"].to_numpy(dtype=float)
    if np.isnan(acc).any():
        raise ValueError(f"{int(np.isnan(acc).sum())} data points have a NaN accuracy; drop or fill them first")
    q = points["iteration"].to_numpy(dtype=float)
    return q, points[blocks].to_numpy(dtype=float), points[list(stat_names)].to_numpy(dtype=float), acc


def _fit_additive(q, compressed, stats, acc) -> np.ndarray:
    """θ/δ by OLS at the original's start (b = -0.1, c = -0.5), then all jointly with c in [-3, 0]. On data that grow
    like log(q+1) the fit drifts along the law's log limit (c → 0, b → -∞, θ0 → +∞) with ever smaller gains, so it
    stops after MAX_EVALUATIONS."""
    linear = np.column_stack([np.ones_like(q), stats, compressed])  # (R, 1+S+N)
    log_q = np.log1p(q)
    s = stats.shape[1]
    start = np.linalg.lstsq(linear, acc + 0.1 * np.exp(-0.5 * log_q), rcond=None)[0]
    x0 = np.concatenate([start[: 1 + s], [-0.1, -0.5], start[1 + s :]])

    def residual(p):
        return linear @ np.delete(p, [1 + s, 2 + s]) + p[1 + s] * np.exp(p[2 + s] * log_q) - acc

    def jacobian(p):  # (R, 3+S+N), columns in parameter order
        power = np.exp(p[2 + s] * log_q)
        return np.column_stack([linear[:, : 1 + s], power, p[1 + s] * power * log_q, compressed])

    lower = np.full(x0.size, -np.inf)
    upper = np.full(x0.size, np.inf)
    lower[2 + s], upper[2 + s] = -3.0, 0.0
    return least_squares(residual, x0, jac=jacobian, bounds=(lower, upper), max_nfev=MAX_EVALUATIONS, **SOLVER).x


def _fit_multiplicative(q, compressed, stats, acc) -> np.ndarray:
    """OLS on log(max(acc, 1e-3)), then least squares in accuracy space (the log fit overweights low accuracies)."""
    x = np.column_stack([np.ones_like(q), stats, np.log1p(q), compressed])  # (R, 2+S+N), in parameter order
    x0 = np.linalg.lstsq(x, np.log(np.maximum(acc, 1e-3)), rcond=None)[0]
    return least_squares(lambda p: np.exp(x @ p) - acc, x0, jac=lambda p: np.exp(x @ p)[:, None] * x, **SOLVER).x


def split_trials(points: pd.DataFrame, holdout: float = 0.2, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train, held-out) by trial, as the original's 80/20 split; at least one trial on each side."""
    trials = np.unique(points["trial"].to_numpy())
    if trials.size < 2:
        raise ValueError(f"need at least 2 trials to split, got {trials.size}")
    n_held = int(np.clip(round(holdout * trials.size), 1, trials.size - 1))
    held = np.random.default_rng(seed).permutation(trials)[:n_held]
    mask = points["trial"].isin(held).to_numpy()
    return points[~mask], points[mask]


def fit_quality(law: ScalingLaw, points: pd.DataFrame) -> dict[str, float]:
    """R², mean absolute error and count of the law's predictions against `points.accuracy`."""
    q, compressed, stats, acc = _columns(points, law.num_blocks, law.stat_names)
    return agreement(acc, law._evaluate(q, compressed, stats))


def agreement(measured, predicted) -> dict[str, float]:
    """R², mean absolute error and count of `predicted` against `measured` (equal-length arrays)."""
    measured, predicted = np.asarray(measured, dtype=float), np.asarray(predicted, dtype=float)
    error = predicted - measured
    total = float(((measured - measured.mean()) ** 2).sum())
    r2 = 1.0 - float((error**2).sum()) / total if total > 0 else float("nan")
    return {"r2": r2, "mae": float(np.abs(error).mean()), "n": float(measured.size)}


def compare_forms(
    points: pd.DataFrame, num_blocks: int, stat_names: Sequence[str], holdout: float = 0.2, seed: int = 0
) -> tuple[dict[str, ScalingLaw], pd.DataFrame]:
    """Fit every form on the training trials; the laws and a table (form, split, r2, mae, n) on both splits."""
    train, held = split_trials(points, holdout, seed)
    laws = {form: ScalingLaw.fit(train, form, num_blocks, stat_names) for form in FORMS}
    rows = [
        {"form": form, "split": split, **fit_quality(law, part)}
        for form, law in laws.items()
        for split, part in (("train", train), ("held-out", held))
    ]
    table = pd.DataFrame(rows)
    # the held-out points themselves, per form, for an interval over held-out trials (`evidence.clustered`)
    table.attrs["held_out"] = {form: held_out_predictions(law, held) for form, law in laws.items()}
    return laws, table


def held_out_predictions(law: ScalingLaw, points: pd.DataFrame) -> pd.DataFrame:
    """(trial, measured, predicted) for every point."""
    q, compressed, stats, acc = _columns(points, law.num_blocks, law.stat_names)
    return pd.DataFrame(
        {"trial": points["trial"].to_numpy(), "measured": acc, "predicted": law._evaluate(q, compressed, stats)}
    )


def choose_form(table: pd.DataFrame) -> str:
    """The form with the lower held-out mean absolute error in `compare_forms`'s table."""
    held = table[table["split"] == "held-out"]
    return str(held.loc[held["mae"].idxmin(), "form"])
