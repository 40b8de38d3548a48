"""cpu_threads=auto: threads from the CPUs this process may use (affinity, cgroup quota) less
those other processes keep busy, chosen once when the run starts, logged, kept in the
checkpoint's config so a resumed run trains with the same count; OMP_NUM_THREADS wins."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from dcgan.config import validate
from dcgan.errors import DCGANError
from dcgan.runtime import cpu_share
from dcgan.runtime.cpu_share import (
    busy_cpus_of_others,
    cgroup_quota,
    choose_cpu_threads,
    cpu_times,
    usable_cpus,
)
from dcgan.store.checkpoints import load_checkpoint
from tests.conftest import TINY, run_cli

STAT = """cpu  300 0 100 600 0 0 0 0 0 0
cpu0 100 0 50 350 0 0 0 0 0 0
cpu1 200 40 50 250 0 0 0 0 0 0
intr 12345
"""


def test_a_cgroup_quota_caps_the_usable_cpus(tmp_path):
    cpu_max = tmp_path / "cpu.max"
    cpu_max.write_text("150000 100000\n")
    assert cgroup_quota(cpu_max) == 1.5
    assert usable_cpus(cpu_max) == 1  # 1.5 CPUs of time: one thread never waits for another
    cpu_max.write_text("max 100000\n")
    assert cgroup_quota(cpu_max) is None
    assert usable_cpus(cpu_max) == len(os.sched_getaffinity(0))
    assert cgroup_quota(tmp_path / "absent") is None


def test_proc_stat_is_read_per_cpu(tmp_path):
    stat = tmp_path / "stat"
    stat.write_text(STAT)
    assert cpu_times({1}, stat) == (290, 540)  # cpu1 only; niced time is busy time too
    assert cpu_times(None, stat)[1] == 500 + 540
    assert cpu_times(None, tmp_path / "absent") is None


def test_omp_num_threads_is_the_users_choice(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    choice = choose_cpu_threads()
    assert choice.threads == 3 and "OMP_NUM_THREADS" in choice.describe()


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two usable CPUs")
def test_a_busy_process_takes_a_cpu_from_the_choice(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)  # past its start-up
        assert busy_cpus_of_others(0.5) >= 0.7
        choice = choose_cpu_threads(0.5)
    finally:
        spinner.kill()
        spinner.wait()
    assert choice.threads <= choice.usable - 1
    assert "kept busy by other processes" in choice.describe()


def test_auto_is_the_default_and_bad_values_are_refused(make_config):
    assert make_config().cpu_threads == "auto"
    validate(make_config("cpu_threads=2"))
    validate(make_config("cpu_threads=null"))
    for bad in ("0", "many", "true"):
        with pytest.raises(DCGANError, match="cpu_threads must be auto, a number of threads"):
            validate(make_config(f"cpu_threads={bad}"))


def test_unreadable_load_falls_back_to_every_usable_cpu(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(cpu_share, "busy_cpus_of_others", lambda seconds, since: None)
    monkeypatch.setattr(cpu_share, "usable_cpus", lambda: 4)
    choice = choose_cpu_threads()
    assert (choice.threads, choice.usable) == (4, 4)


@pytest.mark.slow
def test_the_chosen_count_is_logged_and_kept_on_resume(tmp_path, monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    run_dir = tmp_path / "run"
    first = run_cli("dcgan-train", *TINY, "epochs=1", f"hydra.run.dir={run_dir}", check=True)
    assert "cpu_threads=auto: " in first.stdout + first.stderr
    chosen = load_checkpoint(run_dir / "checkpoints" / "last.pt")["config"]["cpu_threads"]
    assert isinstance(chosen, int) and 1 <= chosen <= len(os.sched_getaffinity(0))
    resumed = run_cli("dcgan-train", f"resume={run_dir}", "epochs=2", check=True)
    assert "cpu_threads=auto" not in resumed.stdout + resumed.stderr  # not chosen again
    state = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    assert state["epoch"] == 2 and state["config"]["cpu_threads"] == chosen
