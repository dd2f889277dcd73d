"""functions: in-context learning of function-class mixtures (STUDIES.md §3).

Each sequence holds a fresh function f and points x_1..x_k ~ N(0, I_d); the
model reads ``x_1, f(x_1), ..., x_k, f(x_k)`` and predicts f(x_i) at the
position of x_i, from the i-1 examples before it (Garg et al. 2022).

Layout (Garg et al.'s, read in linearly; ``in_dim = d``, ``out_dim = 1``)::

    position   0     1              2     3              ...  2k-2   2k-1
    reads      x_1   [y_1, 0..0]    x_2   [y_2, 0..0]    ...  x_k    [y_k, 0..0]
    predicts   y_1   .              y_2   .              ...  y_k    .

The loss is the mean squared error at the x positions (``Batch.mask``).

Every family is one formula, f(x) = a*<w, x> + (1 - a)*amp*sin(freq*<v, x>):

* ``linear`` (a = 1): w ~ N(0, s^2 I_d), s = ``linear_scale`` (Garg: 1).
* ``sparse_linear`` (a = 1): the same w with all but ``sparsity`` random
  coordinates set to zero (Garg: 3 of 20; no more than the active dimensions).
* ``sinusoid`` (a = 0): v uniform on the unit sphere, freq ~ U[freq_min,
  freq_max], amp = ``sin_amplitude``. Since <v, x> ~ N(0, 1), the frequency is
  in radians per standard deviation of the input along v. *(ours: the paper's
  exact sinusoid family could not be read)*
* ``combination``: a ~ U[0, 1] in training, fixed a in the evaluation sweep,
  with the w, v and freq of the families above.

Errors are normalised by the family's output variance, the error of always
predicting 0: d*s^2 for linear (Garg's "divided by d"), sparsity*s^2 for sparse
linear, amp^2 (1 - exp(-2 freq^2)) / 2 for a sinusoid, and
a^2 var(linear) + (1-a)^2 var(sinusoid) for a combination (the cross term has
mean zero). A normalised error of 1 is no better than predicting zero.

The pretraining mixture is a string: families joined by ``+``, each with an
optional weight after ``:`` (``linear+sinusoid``, ``linear:3+sinusoid:1``);
every sequence draws its family from it.

Curriculum (Garg et al.): the active dimensions grow from ``dims_start`` by
``dims_step`` and the points from ``points_start`` by ``points_step`` every
``curriculum_every`` steps, up to ``dims`` and ``length`` (a start above its
end starts at the end); unused dimensions are zero. Evaluation always uses
the full ``dims`` and ``length``.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field

import torch

from cotsweep.config import Setting, TaskConfig
from cotsweep.tasks.base import Batch, ConfigError, ModelSpec, Task
from cotsweep.tasks.registry import register

FAMILIES = ("linear", "sparse_linear", "sinusoid", "combination")
LINEAR, SPARSE, SINUSOID, COMBINATION = range(4)
PREDICTORS = ("model", "lsq", "knn3", "avg")
# suites reported as error-against-examples curves; the rest are scalars at the last point
CURVE_SUITES = ("mixture", "linear", "sparse_linear", "sinusoid")


@dataclass
class FunctionsConfig(TaskConfig):
    name: str = "functions"
    length: int = 41  # k: in-context points at the end of the curriculum (Garg: 2d + 1)
    dims: int = 20  # d at the end of the curriculum
    mixture: str = "linear"
    sparsity: int = 3
    linear_scale: float = 1.0
    sin_amplitude: float = 1.0
    freq_min: float = 1.0
    freq_max: float = 2.0
    curriculum_every: int = 2000  # 0: no curriculum, always d = dims and k = length
    dims_start: int = 5
    dims_step: int = 1
    points_start: int = 11
    points_step: int = 2
    eval_alphas: list[float] = field(default_factory=lambda: [0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0])
    eval_freqs: list[float] = field(
        default_factory=lambda: [0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0]
    )


def parse_mixture(spec: str) -> dict[str, float]:
    """``"linear:3+sinusoid"`` -> {"linear": 0.75, "sinusoid": 0.25}; raises ValueError."""
    weights: dict[str, float] = {}
    for part in str(spec).split("+"):
        name, _, w = part.strip().partition(":")
        if name not in FAMILIES:
            raise ValueError(f"unknown family {name!r}; families: {', '.join(FAMILIES)}")
        weight = float(w) if w else 1.0
        if not weight > 0:
            raise ValueError(f"weight of {name} must be > 0, got {w}")
        weights[name] = weights.get(name, 0.0) + weight
    total = sum(weights.values())
    return {k: v / total for k, v in weights.items()}


def _randn(shape: tuple, gen: torch.Generator, device: torch.device) -> torch.Tensor:
    return torch.randn(shape, generator=gen, device=gen.device).to(device)


def _rand(shape: tuple, gen: torch.Generator, device: torch.device) -> torch.Tensor:
    return torch.rand(shape, generator=gen, device=gen.device).to(device)


@dataclass
class Functions:
    """One function per sequence: f(x) = a*<w, x> + (1 - a)*amp*sin(freq*<v, x>)."""

    family: torch.Tensor  # (B,) index into FAMILIES
    w: torch.Tensor  # (B, D)
    v: torch.Tensor  # (B, D), unit norm
    freq: torch.Tensor  # (B,)
    a: torch.Tensor  # (B,)
    amplitude: float
    linear_var: torch.Tensor  # (B,) E[<w, x>^2] of the linear part's family

    def linear_part(self, xs: torch.Tensor) -> torch.Tensor:
        return torch.einsum("bkd,bd->bk", xs, self.w)

    def sinusoid_part(self, xs: torch.Tensor) -> torch.Tensor:
        return self.amplitude * torch.sin(
            self.freq[:, None] * torch.einsum("bkd,bd->bk", xs, self.v)
        )

    def __call__(self, xs: torch.Tensor) -> torch.Tensor:
        """(B, k, D) -> (B, k)."""
        a = self.a[:, None]
        return a * self.linear_part(xs) + (1 - a) * self.sinusoid_part(xs)

    def variance(self) -> torch.Tensor:
        """(B,) the expected f(x)^2 under the family: the normaliser of squared errors."""
        sin_var = self.amplitude**2 * (1 - torch.exp(-2 * self.freq**2)) / 2
        return self.a**2 * self.linear_var + (1 - self.a) ** 2 * sin_var


@register("functions", FunctionsConfig)
class FunctionClasses(Task):
    def __init__(self, cfg, setting: Setting | str = Setting.base):
        super().__init__(cfg, setting)
        self._baselines: dict[str, dict[str, dict[str, list[float]]]] = {}

    # -- config ----------------------------------------------------------------
    def validate(self) -> None:
        super().validate()
        c = self.cfg
        if self.setting != Setting.base:
            raise ConfigError(
                "setting", self.setting.value, "functions has no chain; use setting=base"
            )
        if c.dims < 1:
            raise ConfigError("task.dims", c.dims, "must be >= 1")
        try:
            parse_mixture(c.mixture)
        except ValueError as e:
            raise ConfigError("task.mixture", c.mixture, str(e)) from e
        if c.sparsity < 1:
            raise ConfigError("task.sparsity", c.sparsity, "must be >= 1")
        if not 0 < c.freq_min <= c.freq_max:
            raise ConfigError(
                "task.freq_min", c.freq_min, f"must be > 0 and <= task.freq_max={c.freq_max}"
            )
        if c.linear_scale <= 0:
            raise ConfigError("task.linear_scale", c.linear_scale, "must be > 0")
        if c.sin_amplitude <= 0:
            raise ConfigError("task.sin_amplitude", c.sin_amplitude, "must be > 0")
        if c.curriculum_every < 0:
            raise ConfigError(
                "task.curriculum_every", c.curriculum_every, "must be >= 0 (0 = no curriculum)"
            )
        if c.curriculum_every > 0:
            for key in ("dims_start", "points_start"):
                if c[key] < 1:
                    raise ConfigError(f"task.{key}", c[key], "must be >= 1")
            for key in ("dims_step", "points_step"):
                if c[key] < 0:
                    raise ConfigError(f"task.{key}", c[key], "must be >= 0")
        for a in c.eval_alphas:
            if not 0 <= a <= 1:
                raise ConfigError(
                    "task.eval_alphas", list(c.eval_alphas), "every a must be in [0, 1]"
                )
        for f in c.eval_freqs:
            if not f > 0:
                raise ConfigError(
                    "task.eval_freqs", list(c.eval_freqs), "every frequency must be > 0"
                )

    def model_spec(self) -> ModelSpec:
        return ModelSpec(seq_len=2 * self.cfg.length, in_dim=self.cfg.dims, out_dim=1)

    def curriculum(self, step: int) -> tuple[int, int]:
        """(active dimensions, points) at training step ``step`` (1-based)."""
        c = self.cfg
        if c.curriculum_every <= 0:
            return c.dims, c.length
        r = max(0, step - 1) // c.curriculum_every  # increments so far
        # a start above the end (a shrunk config) starts at the end
        return min(c.dims, c.dims_start + r * c.dims_step), min(
            c.length, c.points_start + r * c.points_step
        )

    # -- data ------------------------------------------------------------------
    def draw(
        self,
        family: torch.Tensor,
        d_active: int,
        gen: torch.Generator,
        device: torch.device,
        a: float | None = None,
        freq: float | None = None,
    ) -> Functions:
        """Functions of the given families (B,) on the first ``d_active`` dimensions.

        Every random number is drawn whatever the family, so the stream a seed
        gives does not depend on the mixture's outcome. ``a`` and ``freq`` fix the
        combination weight and the frequency (evaluation sweeps).
        """
        c, B, D = self.cfg, family.shape[0], self.cfg.dims
        active = (torch.arange(D, device=device) < d_active).float()  # (D,)
        w = _randn((B, D), gen, device) * c.linear_scale * active
        scores = _rand((B, D), gen, device) + 2.0 * (1 - active)  # inactive dims never chosen
        support = torch.zeros(B, D, device=device).scatter_(
            1, scores.topk(min(c.sparsity, d_active), largest=False).indices, 1.0
        )
        sparse = (family == SPARSE)[:, None]
        w = torch.where(sparse, w * support, w)
        v = _randn((B, D), gen, device) * active
        v = v / v.norm(dim=1, keepdim=True).clamp_min(1e-12)
        u_freq, u_a = _rand((B,), gen, device), _rand((B,), gen, device)
        freqs = (
            torch.full((B,), float(freq), device=device)
            if freq is not None
            else c.freq_min + (c.freq_max - c.freq_min) * u_freq
        )
        combo_a = torch.full((B,), float(a), device=device) if a is not None else u_a
        a_all = torch.where(family == COMBINATION, combo_a, (family != SINUSOID).float())
        lin_var = (
            torch.where(family == SPARSE, float(min(c.sparsity, d_active)), float(d_active))
            * c.linear_scale**2
        )
        return Functions(
            family=family,
            w=w,
            v=v,
            freq=freqs,
            a=a_all,
            amplitude=c.sin_amplitude,
            linear_var=lin_var,
        )

    def points(
        self, batch_size: int, k: int, d_active: int, gen: torch.Generator, device: torch.device
    ) -> torch.Tensor:
        """(B, k, D) points x ~ N(0, I) on the active dimensions, zero on the rest."""
        xs = _randn((batch_size, k, self.cfg.dims), gen, device)
        xs[..., d_active:] = 0
        return xs

    def mixture_families(
        self, batch_size: int, gen: torch.Generator, device: torch.device
    ) -> torch.Tensor:
        mix = parse_mixture(self.cfg.mixture)
        probs = torch.zeros(len(FAMILIES), device=gen.device)
        for name, p in mix.items():
            probs[FAMILIES.index(name)] = p
        return torch.multinomial(probs, batch_size, replacement=True, generator=gen).to(device)

    @staticmethod
    def layout(xs: torch.Tensor, ys: torch.Tensor) -> Batch:
        """Interleave x tokens and [y, 0..0] tokens; targets and mask at the x positions."""
        B, k, D = xs.shape
        x = torch.zeros(B, 2 * k, D, device=xs.device, dtype=xs.dtype)
        x[:, 0::2] = xs
        x[:, 1::2, 0] = ys
        y = torch.zeros(B, 2 * k, device=xs.device, dtype=ys.dtype)
        y[:, 0::2] = ys
        mask = torch.zeros(B, 2 * k, dtype=torch.bool, device=xs.device)
        mask[:, 0::2] = True
        return Batch(x=x, y=y, mask=mask)

    def train_batch(
        self, batch_size: int, gen: torch.Generator, device: torch.device, step: int = 0
    ) -> Batch:
        d_active, k = self.curriculum(step)
        fns = self.draw(self.mixture_families(batch_size, gen, device), d_active, gen, device)
        xs = self.points(batch_size, k, d_active, gen, device)
        return self.layout(xs, fns(xs))

    def loss(self, out: torch.Tensor, batch: Batch) -> torch.Tensor:
        """Mean squared error at the x positions (Garg et al. train on the raw, unnormalised error)."""
        err = (out[..., 0].float() - batch.y) ** 2
        return (err * batch.mask).sum() / batch.mask.sum()

    # -- evaluation --------------------------------------------------------------
    def suites(self) -> list[tuple[str, str, float | None, float | None]]:
        """(name, family, fixed a, fixed frequency) of every evaluation batch, in draw order."""
        out: list[tuple[str, str, float | None, float | None]] = [
            ("mixture", "mixture", None, None)
        ]
        out += [(f, f, None, None) for f in ("linear", "sparse_linear", "sinusoid")]
        out += [(f"combo_a{a:g}", "combination", float(a), None) for a in self.cfg.eval_alphas]
        out += [(f"freq{f:g}", "sinusoid", None, float(f)) for f in self.cfg.eval_freqs]
        return out

    @torch.no_grad()
    def evaluate(
        self, model: torch.nn.Module, n: int, gen: torch.Generator, device: torch.device
    ) -> dict:
        """Normalised squared error against the number of examples, beside the baselines.

        Keys (all errors normalised, see the module docstring; "at the last point"
        means predicting f(x_k) from k-1 examples):

        * ``mse``: the model at the last point on the pretraining mixture — the
          task's headline figure (there is no accuracy: ``acc`` is absent);
        * ``curve/<suite>/<predictor>``: lists of k errors, the i-th after i-1
          examples, for suites mixture, linear, sparse_linear, sinusoid;
        * ``<suite>/<predictor>``: the same at the last point;
        * ``combo_a`` and ``combo/<predictor>``: a, and the errors at the last point
          of a*linear + (1-a)*sinusoid for each a;
        * ``freq`` and ``freq/<predictor>``: frequencies, and the errors at the last
          point of sinusoids of that frequency; ``freq_train_min/max`` the
          training range.

        Predictors: ``model``; ``lsq`` least squares (minimum-norm below d points);
        ``knn3`` the mean of the 3 nearest previous points' values; ``avg``
        Garg's averaging estimator, x_i . mean_j(x_j y_j). The baselines are computed
        on the very same batches, once per generator state (evaluations reseed it
        identically, so the figures are cached).
        """
        c, k = self.cfg, self.cfg.length
        key = f"{n}:" + hashlib.sha1(gen.get_state().cpu().numpy().tobytes()).hexdigest()
        cached = self._baselines.get(key)
        baselines: dict[str, dict[str, list[float]]] = {} if cached is None else cached
        out: dict = {}
        combo: dict[str, list[float]] = {p: [] for p in PREDICTORS}
        freq: dict[str, list[float]] = {p: [] for p in PREDICTORS}
        was_training = model.training
        model.eval()
        for name, family, a, f in self.suites():
            if family == "mixture":
                fam = self.mixture_families(n, gen, device)
            else:
                fam = torch.full((n,), FAMILIES.index(family), dtype=torch.long, device=device)
            fns = self.draw(fam, c.dims, gen, device, a=a, freq=f)
            xs = self.points(n, k, c.dims, gen, device)
            ys = fns(xs)
            var = fns.variance()  # (n,)
            pred = model(self.layout(xs, ys).x)[:, 0::2, 0].float()  # (n, k)
            curves = {"model": (((pred - ys) ** 2) / var[:, None]).mean(0).tolist()}
            if name not in baselines:
                baselines[name] = baseline_curves(xs, ys, var)
            curves.update(baselines[name])
            for p in PREDICTORS:
                if name in CURVE_SUITES:
                    out[f"curve/{name}/{p}"] = [round(e, 6) for e in curves[p]]
                    out[f"{name}/{p}"] = curves[p][-1]
                elif family == "combination":
                    combo[p].append(curves[p][-1])
                else:
                    freq[p].append(curves[p][-1])
        model.train(was_training)
        self._baselines[key] = baselines
        out["mse"] = out["mixture/model"]
        out["combo_a"] = [float(a) for a in c.eval_alphas]
        out["freq"] = [float(f) for f in c.eval_freqs]
        out["freq_train_min"], out["freq_train_max"] = float(c.freq_min), float(c.freq_max)
        for p in PREDICTORS:
            out[f"combo/{p}"] = combo[p]
            out[f"freq/{p}"] = freq[p]
        return out

    # -- samples -------------------------------------------------------------------
    def sample(self, count: int, gen: torch.Generator) -> list[dict]:
        """Examples with ``family``, ``params`` (the ones the family uses), ``xs`` and ``ys``."""
        c, cpu = self.cfg, torch.device("cpu")
        fns = self.draw(self.mixture_families(count, gen, cpu), c.dims, gen, cpu)
        xs = self.points(count, c.length, c.dims, gen, cpu)
        ys = fns(xs)
        rows = []
        for i in range(count):
            fam = FAMILIES[int(fns.family[i])]
            params: dict = {}
            if fam != "sinusoid":
                params["w"] = _floats(fns.w[i])
            if fam == "sparse_linear":
                params["support"] = torch.nonzero(fns.w[i]).flatten().tolist()
            if fam in ("sinusoid", "combination"):
                params.update(
                    v=_floats(fns.v[i]), freq=float(fns.freq[i]), amplitude=float(fns.amplitude)
                )
            if fam == "combination":
                params["a"] = float(fns.a[i])
            rows.append(
                {
                    "family": fam,
                    "params": params,
                    "xs": [_floats(x) for x in xs[i]],
                    "ys": _floats(ys[i]),
                }
            )
        return rows


def _floats(t: torch.Tensor) -> list[float]:
    return [round(v, 6) for v in t.tolist()]


# ---------------------------------------------------------------- baselines
def baseline_curves(
    xs: torch.Tensor, ys: torch.Tensor, var: torch.Tensor
) -> dict[str, list[float]]:
    """Normalised squared error of each baseline after 0..k-1 examples: {"lsq", "knn3", "avg"} -> k floats.

    Computed on the CPU in float64, so that least squares is exact to rounding
    once there are at least d examples of a noiseless linear function.
    """
    with torch.autocast("cpu", enabled=False):
        xs, ys, var = (t.detach().to("cpu", torch.float64) for t in (xs, ys, var))
        preds = {
            "lsq": least_squares(xs, ys),
            "knn3": nearest_neighbours(xs, ys, 3),
            "avg": averaging(xs, ys),
        }
        return {
            name: (((p - ys) ** 2) / var[:, None]).mean(0).tolist() for name, p in preds.items()
        }


def least_squares(xs: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
    """(B, k) predictions of y_i by the minimum-norm least-squares fit to the i-1 examples before it (0 first)."""
    B, k, _ = xs.shape
    pred = torch.zeros(B, k, dtype=xs.dtype, device=xs.device)
    for i in range(1, k):
        # gelsd (CPU): the minimum-norm solution while there are fewer examples than dimensions
        w = torch.linalg.lstsq(xs[:, :i], ys[:, :i, None], driver="gelsd").solution  # (B, D, 1)
        pred[:, i] = (xs[:, i] * w[..., 0]).sum(-1)
    return pred


def nearest_neighbours(xs: torch.Tensor, ys: torch.Tensor, n_neighbours: int = 3) -> torch.Tensor:
    """(B, k) mean value of the ``n_neighbours`` previous points nearest to x_i (all of them if fewer; 0 first)."""
    B, k, _ = xs.shape
    dist = torch.cdist(xs, xs)  # (B, k, k)
    earlier = torch.ones(k, k, dtype=torch.bool, device=xs.device).tril(-1)  # j < i
    dist = dist.masked_fill(~earlier, math.inf)
    m = min(n_neighbours, k)
    d_near, idx = dist.topk(m, dim=-1, largest=False)  # (B, k, m)
    valid = torch.isfinite(d_near)
    vals = ys.gather(1, idx.flatten(1)).view(B, k, m)
    return (vals * valid).sum(-1) / valid.sum(-1).clamp_min(1)


def averaging(xs: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
    """(B, k) Garg et al.'s averaging estimator: x_i . mean_{j<i}(x_j y_j) (0 first)."""
    moments = torch.cumsum(xs * ys[..., None], dim=1)  # (B, k, D): sum over j <= i
    earlier = torch.cat([torch.zeros_like(moments[:, :1]), moments[:, :-1]], dim=1)
    counts = torch.arange(xs.shape[1], device=xs.device, dtype=xs.dtype).clamp_min(1)[None, :, None]
    return (xs * earlier / counts).sum(-1)
