import os
import pickle

import pytest
import torch

from dcgan.errors import DCGANError
from dcgan.files.atomic import write_atomic
from dcgan.store.checkpoints import (
    load_checkpoint,
    newest_before,
    resolve_checkpoint,
    run_dir_of,
    save_checkpoint,
    set_aside_after,
)


def minimal_checkpoint() -> dict:
    return {"generator": {"w": torch.ones(2)}, "discriminator": {}, "opt_g": {}, "opt_d": {},
            "epoch": 1, "step": 10, "hooks": {"samples": {"fixed_noise": torch.zeros(16, 4, 1, 1)}},
            "rng": {"torch": torch.get_rng_state()}, "config": {"epochs": 2},
            "arch": {"nz": 4, "ngf": 8, "ndf": 8, "channels": 1, "image_size": 64}}


def test_save_and_load_round_trip(tmp_path):
    paths = [tmp_path / "checkpoints" / "epoch_001.pt", tmp_path / "checkpoints" / "last.pt"]
    save_checkpoint(minimal_checkpoint(), paths)
    for path in paths:
        state = load_checkpoint(path)
        assert state["step"] == 10 and torch.equal(state["generator"]["w"], torch.ones(2))
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == [
        "epoch_001.pt", "last.pt"]  # no temporary files left behind


def test_rollback_finds_the_newest_checkpoint_before_a_step_and_sets_later_ones_aside(tmp_path):
    for epoch, step in ((1, 10), (2, 20), (3, 30), (4, 40)):
        save_checkpoint({**minimal_checkpoint(), "epoch": epoch, "step": step},
                        [tmp_path / f"epoch_{epoch:03d}.pt"])
    save_checkpoint({**minimal_checkpoint(), "step": 99}, [tmp_path / "last.pt"])
    (tmp_path / "step_0000025.pt").write_bytes(b"torn")  # passed over, not fatal
    path, state = newest_before(tmp_path, 30)
    assert path.name == "epoch_002.pt" and state["step"] == 20
    assert newest_before(tmp_path, 10) is None  # nothing from before the collapse
    set_aside_after(tmp_path, 20)
    assert sorted(p.name for p in (tmp_path / "abandoned").iterdir()) == ["epoch_003.pt",
                                                                          "epoch_004.pt"]
    assert (tmp_path / "last.pt").is_file() and (tmp_path / "epoch_002.pt").is_file()


def test_a_run_directory_means_its_last_checkpoint(tmp_path):
    save_checkpoint(minimal_checkpoint(), [tmp_path / "checkpoints" / "last.pt"])
    assert resolve_checkpoint(tmp_path) == tmp_path / "checkpoints" / "last.pt"
    assert run_dir_of(tmp_path / "checkpoints" / "last.pt") == tmp_path.resolve()
    assert resolve_checkpoint(tmp_path / "checkpoints") == tmp_path / "checkpoints" / "last.pt"
    (tmp_path / "empty").mkdir()
    with pytest.raises(DCGANError, match="no checkpoint in"):
        resolve_checkpoint(tmp_path / "empty")


def test_failed_write_keeps_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    write_atomic(path, b"old contents")

    def full_disk(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(DCGANError, match="No space left on device.*unchanged"):
        write_atomic(path, b"new contents")
    assert path.read_bytes() == b"old contents"
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_truncated_file_is_a_clear_error(tmp_path):
    path = tmp_path / "last.pt"
    save_checkpoint(minimal_checkpoint(), [path])
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(DCGANError, match="truncated"):
        load_checkpoint(path)


def test_other_files_are_not_checkpoints(tmp_path):
    path = tmp_path / "weights.pt"
    torch.save({"state_dict": {}}, path)
    with pytest.raises(DCGANError, match="not a dcgan training checkpoint"):
        load_checkpoint(path)
    text = tmp_path / "notes.pt"
    text.write_text("hello")
    with pytest.raises(DCGANError, match="notes.pt"):
        load_checkpoint(text)


class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_crafted_pickle_does_not_run_code(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({**minimal_checkpoint(), "config": _RunsCode(marker)}, path)
    with pytest.raises(DCGANError, match="not a safe dcgan checkpoint"):
        load_checkpoint(path)
    assert not marker.exists()
    # a plain pickle file (not a torch zip) is refused the same way
    raw = tmp_path / "raw.pt"
    raw.write_bytes(pickle.dumps(_RunsCode(marker)))
    with pytest.raises(DCGANError):
        load_checkpoint(raw)
    assert not marker.exists()


def test_a_checkpoint_from_before_the_hooks_is_upgraded_on_load(tmp_path):
    old = {key: value for key, value in minimal_checkpoint().items() if key != "hooks"}
    old.update(fixed_noise=torch.ones(16, 4, 1, 1), eval_metrics={"swd/mean": 3.0},
               best_value=2.0, collapse={"detector": {"peak_diversity": 0.5}, "rollbacks": 1,
                                         "noise_start_step": 7})
    save_checkpoint(old, [tmp_path / "old.pt"])
    hooks = load_checkpoint(tmp_path / "old.pt")["hooks"]
    assert torch.equal(hooks["samples"]["fixed_noise"], torch.ones(16, 4, 1, 1))
    assert hooks["evaluation"]["metrics"] == {"swd/mean": 3.0}
    assert hooks["checkpoints"]["best_value"] == 2.0
    assert hooks["collapse"] == {"detector": {"peak_diversity": 0.5}, "rollbacks": 1,
                                 "stabilisers": {"noise_start_step": 7}}


def test_the_names_of_one_save_share_one_file(tmp_path, monkeypatch):
    paths = [tmp_path / "epoch_001.pt", tmp_path / "last.pt", tmp_path / "best.pt"]
    save_checkpoint(minimal_checkpoint(), paths)
    inodes = {path.stat().st_ino for path in paths}
    assert len(inodes) == 1 and paths[0].stat().st_nlink == 3  # one file on disk
    save_checkpoint({**minimal_checkpoint(), "step": 11}, [tmp_path / "last.pt"])
    assert load_checkpoint(paths[0])["step"] == 10  # replacing last.pt left epoch_001.pt alone
    assert load_checkpoint(tmp_path / "last.pt")["step"] == 11

    def no_links(*args):
        raise OSError(1, "Operation not permitted")

    monkeypatch.setattr("os.link", no_links)  # a file system without hard links: copies
    save_checkpoint(minimal_checkpoint(), [tmp_path / "a.pt", tmp_path / "b.pt"])
    assert (tmp_path / "a.pt").read_bytes() == (tmp_path / "b.pt").read_bytes()
    assert (tmp_path / "a.pt").stat().st_ino != (tmp_path / "b.pt").stat().st_ino
    assert not list(tmp_path.glob(".*.tmp-*"))
