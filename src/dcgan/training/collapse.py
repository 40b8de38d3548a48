"""Watch the logged signals of a run and say when the discriminator has won or G has collapsed.

Pure logic: the trainer feeds it the mean of each logging window (`observe`) and each evaluation's
diversity ratio (`observe_diversity`); it answers None, or a `Verdict` naming the signal, the step,
the values and what to try. Each signal fires once when its condition has held long enough, and
again only after the condition has lapsed and built up anew; `reset()` (after a rollback) forgets
everything. `state_dict()` holds plain Python values, so a resumed run keeps its counters.

The rules (thresholds in `CollapseSettings`, validated on the traces in tests/data/traces/):

  d_wins        D loss < d_loss_floor, and G loss > g_loss_ceiling or G loss climbing, in each of
                `patience` consecutive windows. "Climbing": the median G loss of the last
                `patience` windows is at least G_RISE_RATIO times the median of the `patience`
                windows before them (medians, so one spike moves neither).
  d_saturated   D(x) > real_prob_high and D(G(z)) < fake_prob_low in each of `patience`
                consecutive windows: D separates real from fake (almost) perfectly.
                (One Verdict per window: when both reach patience together, it is d_wins.)
  low_diversity an evaluation's diversity ratio (spread of generated images / spread of real
                images) falls below diversity_floor after an earlier evaluation reached it. One
                evaluation is enough: it is already an aggregate over many images (not a noisy
                10-step window), and evaluations are epochs apart. Before any evaluation has
                reached the floor the samples have not spread out yet (a young G draws similar
                blobs: 0.06 after three epochs of the CelebA runs in studies/stable-vs-textbook), which is not collapse.

Why these numbers (tests/data/traces/, small CelebA runs): a healthy textbook run spends its
first ~130 steps with D ahead (D loss 0.046-0.1, G loss 6-11.5, D(x) up to 0.983, D(G(z)) down to
0.023) before G catches up; a run where D has won sits at D loss 0.003-0.034, D(x) 0.98-0.999,
D(G(z)) 0.002-0.014 window after window (the user's CelebA run: D loss 0.000, G loss 64). The
floor 0.05 and 0.98 / 0.02 lie between the two; patience 5 is what keeps the healthy run's one
window at D loss 0.046 and G loss 9.1 from counting (3 would flag it with a floor of 0.08).
A G that collapses to one image while D only leads (D loss 0.06-0.6) looks, in the losses, like
a healthy early phase: only the diversity ratio can say so.
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from dataclasses import dataclass
from typing import Any, Optional

# "G loss climbing": median of the last `patience` windows >= this x median of the ones before.
G_RISE_RATIO = 1.5

SIGNALS = ("d_wins", "d_saturated", "low_diversity")
_D_ADVICE = ("try a lower lr_d (or lr_d < lr_g), instance_noise.std=0.1, real_label=0.9, "
             "augment=[color,translation,cutout], or collapse.policy=rollback")
_ADVICE = {"d_wins": _D_ADVICE, "d_saturated": _D_ADVICE,
           "low_diversity": ("try beta1=0.5 and a lower lr, augment=[color,translation,cutout], "
                             "ema.decay=0.999, or collapse.policy=rollback")}


@dataclass
class CollapseSettings:
    """Mirrored by the config group `collapse`."""

    d_loss_floor: float = 0.05  # D loss below this ...
    g_loss_ceiling: float = 8.0  # ... while G loss above this (or climbing) ...
    patience: int = 5  # ... for this many consecutive log windows
    real_prob_high: float = 0.98  # D(x) above this with D(G(z)) below fake_prob_low
    fake_prob_low: float = 0.02
    diversity_floor: float = 0.3  # diversity ratio (from evaluation) below this

    def __post_init__(self) -> None:
        if self.patience < 1:
            raise ValueError(f"patience must be at least 1, got {self.patience}")


@dataclass
class Verdict:
    signal: str  # one of SIGNALS
    step: int  # the step of the window (or evaluation) that decided it
    message: str  # one line: the signal, the step, the values, what to try
    # the first step the verdict's windows cover (a checkpoint from before it is from before the
    # trouble); None where unknown. For low_diversity: the evaluation's step.
    onset: Optional[int] = None


class CollapseDetector:
    def __init__(self, settings: Optional[CollapseSettings] = None):
        self.settings = settings or CollapseSettings()
        self.peak_diversity = 0.0  # the highest diversity ratio seen (kept by reset)
        self.class_peaks: dict[str, float] = {}  # the same per class (class-conditional runs)
        self.reset()

    def reset(self) -> None:
        """Forget every streak and the G loss history (after a rollback to a healthy state)."""
        self._streak = {signal: 0 for signal in SIGNALS}
        self._since = {signal: -1 for signal in SIGNALS}  # step of the streak's first window
        self._onset = {signal: -1 for signal in SIGNALS}  # first step that window covers
        self._last_step: Optional[int] = None  # the window before this one
        self._fired = {signal: False for signal in SIGNALS}  # said so during this streak
        self._loss_g = deque(maxlen=2 * self.settings.patience)
        self._classes_low: set[str] = set()  # classes below the floor at the last evaluation

    # -- the log windows ---------------------------------------------------------------------

    def observe(self, step: int, loss_d: float, loss_g: float, real_prob: float,
                fake_prob: float) -> Optional[Verdict]:
        """One logging window (means over it). A Verdict the window a condition reaches patience."""
        s = self.settings
        self._loss_g.append(float(loss_g))
        g_high = loss_g > s.g_loss_ceiling
        g_rise = self._g_rise()
        d_wins = loss_d < s.d_loss_floor and (g_high or g_rise is not None)
        saturated = real_prob > s.real_prob_high and fake_prob < s.fake_prob_low
        fired_wins = self._advance("d_wins", d_wins, step)
        fired_saturated = self._advance("d_saturated", saturated, step)
        self._last_step = int(step)
        probs = f"D(x) {real_prob:.3f}, D(G(z)) {fake_prob:.4f}"
        if fired_wins:
            why = (f"G loss {loss_g:.2f} > {s.g_loss_ceiling:g}" if g_high else
                   f"G loss climbing (median {g_rise[0]:.2f} -> {g_rise[1]:.2f})")
            return self._verdict("d_wins", step, (
                f"D loss {loss_d:.4f} < {s.d_loss_floor:g} and {why}, {probs}"))
        if fired_saturated:
            return self._verdict("d_saturated", step, (
                f"D(x) {real_prob:.4f} > {s.real_prob_high:g} and D(G(z)) {fake_prob:.4f} < "
                f"{s.fake_prob_low:g} (D loss {loss_d:.4f}, G loss {loss_g:.2f})"))
        return None

    def _g_rise(self) -> Optional[tuple[float, float]]:
        """(median before, median now) when G loss is climbing, else None."""
        p = self.settings.patience
        if len(self._loss_g) < 2 * p:
            return None
        history = list(self._loss_g)
        before, now = statistics.median(history[:p]), statistics.median(history[p:])
        if math.isfinite(before) and before > 0 and now >= G_RISE_RATIO * before:
            return before, now
        return None

    # -- evaluations -------------------------------------------------------------------------

    def observe_diversity(self, step: int, diversity: float) -> Optional[Verdict]:
        """One evaluation's diversity ratio; a Verdict when it falls below the floor."""
        floor = self.settings.diversity_floor
        low = diversity < floor <= self.peak_diversity  # fell below, after once reaching it
        self.peak_diversity = max(self.peak_diversity, float(diversity))
        if self._advance("low_diversity", low, step, needed=1):
            return self._verdict("low_diversity", step, (
                f"diversity {diversity:.3f} < {floor:g}: the samples look alike (mode collapse)"))
        return None

    def observe_class_diversity(self, step: int, per_class: dict[str, float]
                                ) -> Optional[Verdict]:
        """Each class's diversity ratio at one evaluation of a class-conditional run (its
        samples against the real images of that class); a Verdict naming the classes that
        fell below the floor after once reaching it, each once until it recovers."""
        floor = self.settings.diversity_floor
        low = {name: value for name, value in per_class.items()
               if value < floor <= self.class_peaks.get(name, 0.0)}
        for name, value in per_class.items():
            self.class_peaks[name] = max(self.class_peaks.get(name, 0.0), float(value))
        newly = sorted(set(low) - self._classes_low)
        self._classes_low = set(low)
        if not newly:
            return None
        named = ", ".join(f"{name} ({low[name]:.3f})" for name in newly)
        return Verdict("low_diversity", int(step), (
            f"collapse (low_diversity) at step {step}: class {named} collapsed alone: its "
            f"samples look alike (diversity < {floor:g}) while the run as a whole varies; "
            f"{_ADVICE['low_diversity']}"), onset=int(step))

    # -- shared ------------------------------------------------------------------------------

    def _advance(self, signal: str, holds: bool, step: int, needed: Optional[int] = None) -> bool:
        """Count one more window of `signal`; True once per streak, when it reaches `needed`."""
        if not holds:  # NaN compares False, so a non-finite value also ends a streak
            self._streak[signal], self._since[signal], self._onset[signal] = 0, -1, -1
            self._fired[signal] = False
            return False
        if self._streak[signal] == 0:
            self._since[signal] = int(step)
            previous = self._last_step if signal != "low_diversity" else None
            self._onset[signal] = int(step) if previous is None else previous + 1
        self._streak[signal] += 1
        if self._fired[signal] or self._streak[signal] < (needed or self.settings.patience):
            return False
        self._fired[signal] = True
        return True

    def _verdict(self, signal: str, step: int, values: str) -> Verdict:
        streak = self._streak[signal]
        held = (f" for {streak} log windows (since step {self._since[signal]})"
                if signal != "low_diversity" else "")
        what = {"d_wins": "the discriminator has won",
                "d_saturated": "the discriminator is saturated",
                "low_diversity": "low sample diversity"}[signal]
        return Verdict(signal, int(step),
                       f"collapse ({signal}) at step {step}: {what}: {values}{held}; {_ADVICE[signal]}",
                       onset=self._onset[signal])

    # -- resume ------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return {"streak": dict(self._streak),
                "since": dict(self._since), "onset": dict(self._onset),
                "fired": dict(self._fired), "last_step": self._last_step,
                "loss_g": list(self._loss_g), "peak_diversity": self.peak_diversity,
                **({"class_peaks": dict(self.class_peaks)} if self.class_peaks else {})}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Counters and history from `state_dict()`; the settings stay this detector's own."""
        def per_signal(key: str, default, kind):
            saved = state.get(key, {})
            return {signal: kind(saved.get(signal, default)) for signal in SIGNALS}

        self._streak = per_signal("streak", 0, int)
        self._since = per_signal("since", -1, int)
        self._onset = per_signal("onset", -1, int)
        self._fired = per_signal("fired", False, bool)
        self.peak_diversity = float(state.get("peak_diversity", 0.0))
        self.class_peaks = {str(k): float(v) for k, v in state.get("class_peaks", {}).items()}
        last = state.get("last_step")
        self._last_step = None if last is None else int(last)
        self._loss_g = deque((float(v) for v in state.get("loss_g", [])),
                             maxlen=2 * self.settings.patience)
