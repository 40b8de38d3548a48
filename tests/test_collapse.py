"""The collapse detector: replayed on real recorded traces, and on synthetic edge cases.

The traces in tests/data/traces/ were recorded from real dcgan-train runs with
scripts/record_trace.py; each file's `#` header (and the README there) says how.
"""

from __future__ import annotations

import copy
import csv
import json
import math
from pathlib import Path

import pytest

from dcgan.training.collapse import CollapseDetector, CollapseSettings, Verdict

TRACES = Path(__file__).parent / "data" / "traces"

# window values: (loss_d, loss_g, real_prob, fake_prob)
HEALTHY = (0.9, 2.5, 0.65, 0.35)
D_WON = (0.0004, 30.0, 0.9996, 0.0001)  # the user's run at epoch 20: D loss 0.000, G loss 64
D_AHEAD = (0.12, 6.5, 0.95, 0.05)  # a healthy run's early phase: D ahead, not won


def read_trace(name: str) -> list[tuple[int, float, float, float, float]]:
    with (TRACES / name).open() as handle:
        rows = csv.DictReader(line for line in handle if not line.startswith("#"))
        return [(int(r["step"]), float(r["loss_d"]), float(r["loss_g"]), float(r["real_prob"]),
                 float(r["fake_prob"])) for r in rows]


def replay(rows, detector: CollapseDetector | None = None) -> list[Verdict]:
    detector = detector or CollapseDetector(CollapseSettings())
    return [v for row in rows if (v := detector.observe(*row)) is not None]


def feed(detector: CollapseDetector, windows, start: int = 10, every: int = 10) -> list:
    """Observe `windows` at steps start, start+every, ...; the answer for each."""
    return [detector.observe(start + i * every, *w) for i, w in enumerate(windows)]


# -- recorded traces ---------------------------------------------------------------------------

HEALTHY_TRACES = ["healthy_celeba.csv", "healthy_celeba_lr1e-3.csv"]

# name -> (onset: the step from which D had won in every window, the samples already one
#          image; deadline: the step by which the defaults must have said so)
COLLAPSED_TRACES = {
    "collapsed_celeba_tiny.csv": (10, 60),
    "collapsed_celeba_beta09.csv": (100, 150),
}


@pytest.mark.parametrize("name", HEALTHY_TRACES)
def test_healthy_trace_is_never_flagged(name):
    rows = read_trace(name)
    assert len(rows) >= 30
    assert replay(rows) == []


@pytest.mark.parametrize("name", sorted(COLLAPSED_TRACES))
def test_collapsed_trace_is_flagged_after_its_onset(name):
    onset, deadline = COLLAPSED_TRACES[name]
    verdicts = replay(read_trace(name))
    assert verdicts, f"{name}: the collapse was not flagged"
    first = verdicts[0]
    assert first.signal in ("d_wins", "d_saturated")
    assert onset < first.step <= deadline, first
    assert {v.signal for v in verdicts} == {"d_wins", "d_saturated"}, verdicts


def test_the_tiny_data_collapse_is_d_wins_soon_after_onset():
    verdicts = replay(read_trace("collapsed_celeba_tiny.csv"))
    assert [(v.signal, v.step) for v in verdicts] == [("d_saturated", 30), ("d_wins", 52)]


# name -> the first epoch-end step whose samples were all one pattern
MODE_COLLAPSE_TRACES = {
    "mode_collapse_celeba_resume_beta09.csv": 279,
    "mode_collapse_celeba_textbook_resume_beta09.csv": 341,
}


@pytest.mark.parametrize("name", sorted(MODE_COLLAPSE_TRACES))
def test_mode_collapse_without_d_winning_is_left_to_diversity(name):
    # G collapsed to one pattern, but D led no more than in a healthy run's early phase:
    # no loss rule can tell these apart without flagging healthy_celeba.csv, so none does
    rows = read_trace(name)
    assert replay(rows) == []
    healthy_early = [r for r in read_trace("healthy_celeba.csv") if 40 <= r[0] <= 130]
    collapsed = [r for r in rows if r[0] >= MODE_COLLAPSE_TRACES[name]]
    assert min(r[1] for r in collapsed) > min(r[1] for r in healthy_early)  # D loss
    assert max(r[2] for r in collapsed) < max(r[2] for r in healthy_early)  # G loss


# -- the user's collapse -----------------------------------------------------------------------

def test_the_users_collapse_is_flagged_after_patience_windows():
    detector = CollapseDetector(CollapseSettings())
    answers = feed(detector, [HEALTHY] * 10 + [(0.0, g, 1.0, 0.0) for g in (12, 20, 33, 48, 64)])
    assert answers[:-1] == [None] * 14
    verdict = answers[-1]
    assert verdict.signal == "d_wins" and verdict.step == 150
    for part in ("d_wins", "150", "0.0000", "64.00", "lr_d"):
        assert part in verdict.message, verdict.message
    assert "\n" not in verdict.message


def test_the_onset_is_the_first_step_of_the_streak():
    detector = CollapseDetector(CollapseSettings())
    answers = feed(detector, [HEALTHY] * 3 + [D_WON] * 5)  # windows end at 10, 20, ..., 80
    assert answers[-1].step == 80 and answers[-1].onset == 31  # window 4 covers steps 31-40
    assert "since step 40" in answers[-1].message
    fresh = CollapseDetector(CollapseSettings())
    assert feed(fresh, [D_WON] * 5)[-1].onset == 10  # no window before: its own step
    assert fresh.observe_diversity(85, 0.9) is None
    assert fresh.observe_diversity(90, 0.05).onset == 90


def test_a_verdict_is_given_once_per_streak():
    detector = CollapseDetector(CollapseSettings())
    answers = feed(detector, [D_WON] * 12 + [HEALTHY] + [D_WON] * 5)
    fired = [(i, a.signal) for i, a in enumerate(answers) if a is not None]
    assert fired == [(4, "d_wins"), (17, "d_wins")]


# -- what must not trigger ---------------------------------------------------------------------

def test_one_spike_does_not_trigger():
    spike = (0.0001, 64.0, 0.9999, 0.00001)
    detector = CollapseDetector(CollapseSettings())
    assert feed(detector, [HEALTHY] * 10 + [spike] + [HEALTHY] * 20) == [None] * 31


def test_a_g_loss_spike_does_not_make_g_climb():
    # D ahead (not saturated) for long, with one huge G spike: the medians ignore it
    ahead = (0.04, 6.0, 0.97, 0.03)
    spike = (0.04, 60.0, 0.97, 0.03)
    detector = CollapseDetector(CollapseSettings())
    assert feed(detector, [ahead] * 7 + [spike] + [ahead] * 7) == [None] * 15


def test_a_healthy_runs_early_d_lead_does_not_trigger():
    detector = CollapseDetector(CollapseSettings())
    assert feed(detector, [D_AHEAD] * 50) == [None] * 50


def test_low_d_loss_with_flat_moderate_g_loss_is_not_d_wins():
    flat = (0.03, 5.0, 0.975, 0.03)  # G neither above the ceiling nor climbing, D not saturated
    assert feed(CollapseDetector(CollapseSettings()), [flat] * 30) == [None] * 30


def test_an_interrupted_streak_starts_again():
    detector = CollapseDetector(CollapseSettings())
    answers = feed(detector, [D_WON] * 4 + [HEALTHY] + [D_WON] * 4)
    assert answers == [None] * 9


def test_non_finite_values_end_a_streak():
    detector = CollapseDetector(CollapseSettings())
    answers = feed(detector, [D_WON] * 4 + [(math.nan, math.nan, math.nan, math.nan)]
                   + [D_WON] * 4)
    assert answers == [None] * 9


# -- the rules one by one ----------------------------------------------------------------------

@pytest.mark.parametrize("patience", [1, 3, 5, 8])
def test_patience_is_respected(patience):
    detector = CollapseDetector(CollapseSettings(patience=patience))
    answers = feed(detector, [D_WON] * (patience + 3))
    assert answers[:patience - 1] == [None] * (patience - 1)
    assert answers[patience - 1].signal == "d_wins"
    assert answers[patience - 1].step == 10 * patience
    assert answers[patience:] == [None] * 3


def climbing_g(windows: int) -> list:
    """D ahead (D loss under the floor, not saturated), G loss growing 12% a window from 1.5."""
    return [(0.03, 1.5 * 1.12 ** i, 0.975, 0.03) for i in range(windows)]


def test_g_loss_climbing_below_the_ceiling_counts():
    settings = CollapseSettings()
    windows = climbing_g(14)
    assert all(w[1] < settings.g_loss_ceiling for w in windows)
    answers = feed(CollapseDetector(settings), windows)
    # climbing is judged from window 10 (5 windows against the 5 before), then held 5 windows
    assert answers[:13] == [None] * 13
    assert answers[13].signal == "d_wins" and "climbing" in answers[13].message


def test_g_loss_that_climbs_too_slowly_is_not_climbing():
    slow = [(0.03, 3.0 + 0.05 * i, 0.975, 0.03) for i in range(40)]  # 3 -> 5, under the ceiling
    assert feed(CollapseDetector(CollapseSettings()), slow) == [None] * 40


def test_saturated_discriminator_with_moderate_g_loss():
    saturated = (0.06, 5.0, 0.99, 0.01)  # D loss above the floor, but D(x) ~1 and D(G(z)) ~0
    answers = feed(CollapseDetector(CollapseSettings()), [saturated] * 6)
    assert [a and a.signal for a in answers] == [None] * 4 + ["d_saturated", None]


def test_low_diversity_triggers():
    detector = CollapseDetector(CollapseSettings(diversity_floor=0.3))
    assert detector.observe_diversity(100, 0.8) is None
    verdict = detector.observe_diversity(200, 0.12)
    assert verdict.signal == "low_diversity" and verdict.step == 200
    assert "0.120" in verdict.message and "0.3" in verdict.message
    assert detector.observe_diversity(300, 0.1) is None  # still low: said once
    assert detector.observe_diversity(400, 0.9) is None
    assert detector.observe_diversity(500, 0.2).signal == "low_diversity"


def test_diversity_that_never_reached_the_floor_is_a_young_generator():
    detector = CollapseDetector(CollapseSettings(diversity_floor=0.3))
    assert detector.observe_diversity(45, 0.06) is None  # epoch 3: blobs that look alike
    assert detector.observe_diversity(90, 0.2) is None
    assert detector.observe_diversity(135, 0.5) is None  # the samples spread out
    assert detector.observe_diversity(180, 0.1).signal == "low_diversity"  # and collapsed


def test_diversity_and_log_windows_are_separate():
    detector = CollapseDetector(CollapseSettings())
    feed(detector, [D_WON] * 4)
    assert detector.observe_diversity(45, 0.9) is None
    assert detector.observe(50, *D_WON).signal == "d_wins"


# -- reset and resume --------------------------------------------------------------------------

def test_reset_clears_the_counters():
    detector = CollapseDetector(CollapseSettings())
    assert feed(detector, [D_WON] * 4) == [None] * 4
    detector.observe_diversity(44, 0.9)
    detector.observe_diversity(45, 0.1)
    detector.reset()
    answers = feed(detector, [D_WON] * 5, start=100)
    assert answers[:4] == [None] * 4 and answers[4].signal == "d_wins"
    assert "since step 100" in answers[4].message
    assert detector.observe_diversity(200, 0.1).signal == "low_diversity"


def test_state_dict_round_trip_continues_counting():
    first = CollapseDetector(CollapseSettings())
    assert feed(first, [HEALTHY] * 3 + [D_WON] * 3) == [None] * 6
    state = json.loads(json.dumps(first.state_dict()))  # plain Python values only
    resumed = CollapseDetector(CollapseSettings())
    resumed.load_state_dict(copy.deepcopy(state))
    answers = feed(resumed, [D_WON] * 2, start=70)
    assert answers[0] is None and answers[1].signal == "d_wins" and answers[1].step == 80
    assert answers[1].onset == 31
    # the original, fed the same windows, says the same
    assert [a and (a.signal, a.step, a.message) for a in feed(first, [D_WON] * 2, start=70)] == \
        [a and (a.signal, a.step, a.message) for a in answers]


def test_state_dict_keeps_the_g_loss_history():
    windows = climbing_g(14)
    first = CollapseDetector(CollapseSettings())
    assert feed(first, windows[:13]) == [None] * 13
    resumed = CollapseDetector(CollapseSettings())
    resumed.load_state_dict(first.state_dict())
    verdict = resumed.observe(140, *windows[13])
    assert verdict is not None and "climbing" in verdict.message


def test_state_dict_after_a_verdict_does_not_repeat_it():
    first = CollapseDetector(CollapseSettings())
    feed(first, [D_WON] * 6)
    resumed = CollapseDetector(CollapseSettings())
    resumed.load_state_dict(first.state_dict())
    assert resumed.observe(70, *D_WON) is None


def test_patience_must_be_positive():
    with pytest.raises(ValueError, match="patience"):
        CollapseSettings(patience=0)
