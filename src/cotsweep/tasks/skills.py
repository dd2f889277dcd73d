"""skills: emergence of skill combinations as a Monte-Carlo simulation (STUDIES.md §4).

No model is trained (``trains = False``): the trial calls :meth:`SkillGraph.simulate`,
which plays out Arora & Goyal's random bipartite skill graph at model scale N.

The model of the simulation
---------------------------
* **Graph** *(paper)*: ``skills`` skills and ``texts`` text pieces; each text
  piece is adjacent to ``degree`` distinct skills drawn uniformly (an edge:
  understanding the piece needs the skill).
* **Loss** *(paper: a neural scaling law)*: L(N) = E + A / N^alpha; the defaults
  are Chinchilla's model-size term (Hoffmann et al. 2022: E = 1.69, A = 406.4,
  alpha = 0.34).
* **Loss to failures** *(ours)*: the model fails on a fraction
  theta = 1 - exp(-(L - E) / fail_loss) of the text pieces, i.e. each failed piece
  costs about ``fail_loss`` nats of excess loss while theta is small; the
  irreducible part E never fails a piece.
* **Which pieces fail** *(ours: the paper bounds every failure set of that size;
  a simulation needs one)*: skill s is misapplied with probability
  eps_s = min(1, lambda * u_s), independently per use, where u_s (mean 1) is the
  skill's weakness, Gamma-distributed with shape ``weakness_shape`` (0: every
  skill alike). A piece succeeds iff none of its skills is misapplied. lambda is
  solved so that the expected fraction of failed pieces on the sampled graph is
  exactly theta.
* **Competence on a skill** *(paper)*: the success rate on the text pieces
  adjacent to it in the graph; reported as ``graph_competence`` (mean over
  skills).
* **Competence on a k-tuple** *(ours, after Skill-Mix)*: the success rate on a
  text piece that needs exactly the k skills of the tuple,
  prod_{s in tuple} (1 - eps_s); ``competence_k<k>`` is its mean over ``tuples``
  random k-tuples, and ``competent_frac_k<k>`` the fraction of those tuples with
  competence >= ``competence_level``. The k-tuples are nested (each is the first
  k skills of a random ``length``-tuple), so a k-tuple is never easier than the
  (k-1)-tuple inside it.
* ``k_star``: the k at which the mean competence falls to ``competence_level``,
  from the fit log competence_k = k * r (exact for this model when the skills of
  a tuple are distinct). For small theta, eps ~ theta ~ N^-alpha, so k_star grows
  like N^alpha and doubling it takes 2^(1/alpha) times the scale (7.7x for
  alpha = 0.34) — the report sets the measured factor beside the paper's rule of
  thumb (10x scale about doubles k).

Everything random comes from one numpy Generator seeded by the trial seed; the
graph, weaknesses and tuples do not depend on the scale, so the trials of one
seed share them and competence is exactly monotone in N.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from cotsweep.config import Setting, TaskConfig
from cotsweep.tasks.base import ConfigError, ModelSpec, Task
from cotsweep.tasks.registry import register


@dataclass
class SkillsConfig(TaskConfig):
    name: str = "skills"
    length: int = 4  # K: competence is reported for k-tuples, k = 1..K
    skills: int = 1000
    texts: int = 20000
    degree: int = 4  # skills per text piece
    scale: float = 1.0e9  # N, the model scale (parameters)
    E: float = 1.69
    A: float = 406.4
    alpha: float = 0.34
    fail_loss: float = 1.0  # nats of excess loss per failed text piece (ours)
    weakness_shape: float = 2.0  # Gamma shape of the skills' weaknesses; 0 = all alike (ours)
    tuples: int = 20000  # Monte-Carlo k-tuples
    competence_level: float = 0.8


def scaling_loss(scale: float, E: float, A: float, alpha: float) -> float:
    """L(N) = E + A / N^alpha."""
    return E + A / scale**alpha


def distinct_sets(rng: np.random.Generator, rows: int, size: int, population: int) -> np.ndarray:
    """(rows, size) uniform draws of ``size`` distinct items from range(population), in random order."""
    sets = rng.integers(0, population, size=(rows, size))
    while True:
        s = np.sort(sets, axis=1)
        dup = (s[:, 1:] == s[:, :-1]).any(axis=1)
        if not dup.any():
            return sets
        sets[dup] = rng.integers(0, population, size=(int(dup.sum()), size))


@register("skills", SkillsConfig)
class SkillGraph(Task):
    trains = False

    def validate(self) -> None:
        super().validate()
        c = self.cfg
        if self.setting != Setting.base:
            raise ConfigError(
                "setting",
                self.setting.value,
                "skills is a simulation without a chain; use setting=base",
            )
        checks = [
            (
                "task.skills",
                c.skills,
                c.skills >= max(c.length, c.degree),
                f"must be >= task.length={c.length} and task.degree={c.degree}",
            ),
            ("task.texts", c.texts, c.texts >= 1, "must be >= 1"),
            ("task.degree", c.degree, c.degree >= 1, "must be >= 1"),
            ("task.scale", c.scale, c.scale > 0, "must be > 0"),
            ("task.A", c.A, c.A >= 0, "must be >= 0"),
            ("task.alpha", c.alpha, c.alpha > 0, "must be > 0"),
            ("task.fail_loss", c.fail_loss, c.fail_loss > 0, "must be > 0"),
            (
                "task.weakness_shape",
                c.weakness_shape,
                c.weakness_shape >= 0,
                "must be >= 0 (0 = all skills alike)",
            ),
            ("task.tuples", c.tuples, c.tuples >= 1, "must be >= 1"),
            (
                "task.competence_level",
                c.competence_level,
                0 < c.competence_level < 1,
                "must be in (0, 1)",
            ),
        ]
        for key, value, ok, why in checks:
            if not ok:
                raise ConfigError(key, value, why)

    def model_spec(self) -> ModelSpec:
        return ModelSpec(seq_len=0)  # nothing is trained

    # -- the simulation -------------------------------------------------------------
    def draw(self, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(weakness (skills,), graph (texts, degree), tuples (tuples, length)): all that is random."""
        c = self.cfg
        rng = np.random.default_rng(int(seed))
        if c.weakness_shape > 0:
            weakness = rng.gamma(c.weakness_shape, 1.0 / c.weakness_shape, size=c.skills)
        else:
            weakness = np.ones(c.skills)
        graph = distinct_sets(rng, c.texts, c.degree, c.skills)
        tuples = distinct_sets(rng, c.tuples, c.length, c.skills)
        return weakness, graph, tuples

    def failure_fraction(self) -> tuple[float, float]:
        """(L(N), theta): the loss at this scale and the fraction of text pieces it fails."""
        c = self.cfg
        loss = scaling_loss(c.scale, c.E, c.A, c.alpha)
        return loss, -math.expm1(-(loss - c.E) / c.fail_loss)

    @staticmethod
    def solve_rate(weakness: np.ndarray, graph: np.ndarray, theta: float) -> float:
        """lambda such that the graph's expected fraction of failed pieces is theta (bisection)."""
        w = weakness[graph]  # (texts, degree)

        def failed(lam: float) -> float:
            return 1.0 - np.prod(1.0 - np.minimum(1.0, lam * w), axis=1).mean()

        lo, hi = 0.0, 1.0 / max(float(weakness.min()), 1e-12)  # at hi every skill always fails
        if theta <= 0:
            return 0.0
        for _ in range(100):
            mid = 0.5 * (lo + hi)
            lo, hi = (mid, hi) if failed(mid) < theta else (lo, mid)
        return 0.5 * (lo + hi)

    def simulate(self, seed: int = 0) -> dict:
        """Competence on single skills and k-tuples at scale N; flat figures for result.json."""
        c = self.cfg
        weakness, graph, tuples = self.draw(seed)
        loss, theta = self.failure_fraction()
        lam = self.solve_rate(weakness, graph, theta)
        eps = np.minimum(1.0, lam * weakness)  # (skills,) misapplication probability
        piece_success = np.prod(1.0 - eps[graph], axis=1)  # (texts,)
        # paper's competence on a skill: mean success over its adjacent pieces
        per_skill_sum = np.bincount(
            graph.ravel(), weights=np.repeat(piece_success, c.degree), minlength=c.skills
        )
        per_skill_n = np.bincount(graph.ravel(), minlength=c.skills)
        has_text = per_skill_n > 0
        graph_competence = per_skill_sum[has_text] / per_skill_n[has_text]
        # nested tuples: the k-tuple is the first k skills of each drawn tuple
        tuple_comp = np.cumprod(1.0 - eps[tuples], axis=1)  # (tuples, K)
        out: dict = {
            "scale": float(c.scale),
            "loss": loss,
            "excess_loss": loss - c.E,
            "theta": theta,
            "theta_graph": float(1.0 - piece_success.mean()),
            "skill_error": float(eps.mean()),
            "rate": lam,
            "graph_competence": float(graph_competence.mean()) if has_text.any() else None,
            "graph_competent_frac": float((graph_competence >= c.competence_level).mean())
            if has_text.any()
            else None,
            "competence_level": float(c.competence_level),
            "max_k": int(c.length),
        }
        for k in range(1, c.length + 1):
            out[f"competence_k{k}"] = float(tuple_comp[:, k - 1].mean())
            out[f"competent_frac_k{k}"] = float((tuple_comp[:, k - 1] >= c.competence_level).mean())
        out["k_star"] = k_star(
            [out[f"competence_k{k}"] for k in range(1, c.length + 1)], c.competence_level
        )
        return out


def k_star(competence: list[float], level: float) -> float | None:
    """The k at which mean competence falls to ``level``, from the fit log c_k = k * r through 0.

    None when no tuple ever fails (r = 0: every k is reached).
    """
    ks = np.arange(1, len(competence) + 1, dtype=float)
    logs = np.log(np.clip(np.asarray(competence, dtype=float), 1e-300, 1.0))
    r = float((ks * logs).sum() / (ks * ks).sum())
    return math.log(level) / r if r < 0 else None
