"""Conditional training: the networks conditioned on labels, the labels asked of G, the labelled
feed, checkpoints that keep the labels, and dcgan-sample / dcgan-eval by class or attribute."""

import json

import pytest
import torch
from PIL import Image

from dcgan.config import gan_settings
from dcgan.data.loader import DeviceFeed, EpochShuffle, LabelledImages, build_loader
from dcgan.errors import DCGANError
from dcgan.nets.conditioning import (
    ConditionalBatchNorm2d,
    FakeLabels,
    LabelSpace,
    fake_labels_from_data,
    parse_attribute_settings,
)
from dcgan.nets.models import Architecture, build_models, count_parameters
from dcgan.runtime.process import seed_everything
from dcgan.store.checkpoints import load_checkpoint, load_labels, save_generator
from dcgan.training.graphs import StepGraphs
from dcgan.training.pair import GANPair
from tests.conftest import TINY, run_cli, user_error_line
from tests.test_graphs import ReplayOnCPU

DIGITS = LabelSpace("class", tuple(str(d) for d in range(10)))
SMALL = dict(nz=8, ngf=8, ndf=8, channels=1, image_size=32)


def conditional(kind="class", size=10, style="projection", **fields):
    return Architecture(**{**SMALL, **fields}, condition=kind, label_size=size,
                        condition_style=style)


# -- the networks ------------------------------------------------------------------------------

def test_condition_none_builds_todays_networks_and_checkpoint_fields():
    plain = Architecture(**SMALL)
    assert set(plain.as_dict()) == {"nz", "ngf", "ndf", "channels", "image_size", "d_batchnorm",
                                    "d_spectral_norm"}
    assert Architecture(**plain.as_dict()) == plain  # old checkpoints read as unconditional
    g, d = build_models(plain)
    assert not any("embed" in name or "norm." in name for name in
                   [*g.state_dict(), *d.state_dict()])
    assert (count_parameters(g), count_parameters(d)) == (14576, 10976)


@pytest.mark.parametrize("style", ["projection", "concat"])
@pytest.mark.parametrize("kind,size", [("class", 10), ("attributes", 3)])
def test_both_networks_read_the_label(kind, size, style):
    torch.manual_seed(0)
    g, d = build_models(conditional(kind, size, style))
    g.eval(), d.eval()
    z = torch.randn(4, 8)
    y_a, y_b = torch.zeros(4, size), torch.zeros(4, size)
    y_a[:, 0], y_b[:, 1] = 1, 1
    with torch.no_grad():
        for module in (*g.modules(), *d.modules()):  # make the label's weights count
            if isinstance(module, torch.nn.Linear):
                module.weight.normal_(0, 1)
        images_a, images_b = g(z, y_a), g(z, y_b)
        assert images_a.shape == (4, 1, 32, 32) and images_a.abs().max() <= 1
        assert not torch.allclose(images_a, images_b)
        assert d(images_a, y_a).shape == (4,)
        assert not torch.allclose(d(images_a, y_a), d(images_a, y_b))


def test_a_fresh_conditional_batchnorm_is_a_fresh_batchnorm_for_every_label():
    torch.manual_seed(0)
    layer = ConditionalBatchNorm2d(6, 10)
    torch.nn.init.zeros_(layer.gain.weight)
    x = torch.randn(8, 6, 4, 4)
    plain = torch.nn.BatchNorm2d(6, affine=False)
    assert torch.allclose(layer(x, DIGITS.vectors(torch.arange(8))), plain(x), atol=1e-6)


def test_the_projection_head_trains_and_freeze_d_leaves_it_trainable():
    from dcgan.nets.models import freeze_first_blocks

    _, d = build_models(conditional())
    trainable = freeze_first_blocks(d, 2)
    assert any(p is d.embed.weight for p in trainable)
    assert not d.main[0].weight.requires_grad


# -- the labels asked of G ----------------------------------------------------------------------

def test_fake_labels_are_uniform_or_follow_the_data_and_attribute_rows_are_real():
    torch.manual_seed(0)
    uniform = FakeLabels(DIGITS).draw(20_000)
    assert torch.bincount(uniform, minlength=10).min() > 1800
    counts = torch.tensor([9000] + [111] * 9)
    skewed = FakeLabels(DIGITS, "data", counts=counts).draw(20_000)
    assert (skewed == 0).float().mean() > 0.85
    rows = torch.tensor([[1, 0, 1], [0, 1, 1]], dtype=torch.float32)
    faces = FakeLabels(LabelSpace("attributes", ("Smiling", "Male", "Young")), rows=rows)
    drawn = faces.draw(50)
    assert all(any(torch.equal(row, real) for real in rows) for row in drawn)


def test_fake_labels_survive_a_checkpoint_and_a_private_generator_repeats():
    values = torch.tensor([0, 1, 1, 2, 2, 2])
    labels = fake_labels_from_data(LabelSpace("class", ("a", "b", "c")), values, "data",
                                   torch.device("cpu"))
    state = labels.state_dict()
    again = FakeLabels.from_state(state, torch.device("cpu"))
    assert again.space == labels.space and torch.equal(again.counts, torch.tensor([1, 2, 3]))
    draw = lambda: again.draw(8, generator=torch.Generator().manual_seed(3))  # noqa: E731
    assert torch.equal(draw(), draw())


def test_class_and_attribute_requests_are_checked_by_name():
    assert DIGITS.class_id("7") == 7
    cifar = LabelSpace("class", ("airplane", "cat"))
    assert cifar.class_id("cat") == 1 and cifar.class_id("0") == 0
    with pytest.raises(DCGANError, match="unknown class 'dog'; the model knows airplane, cat"):
        cifar.class_id("dog")
    faces = LabelSpace("attributes", ("Smiling", "Eyeglasses"))
    assert parse_attribute_settings(faces, ["Smiling", "-Eyeglasses"]) == {0: 1.0, 1: 0.0}
    with pytest.raises(DCGANError, match="no attribute 'Bald'; it knows Smiling, Eyeglasses"):
        parse_attribute_settings(faces, ["Bald"])


# -- the labelled feed ----------------------------------------------------------------------------

def test_both_feeds_give_each_image_its_own_label(make_config):
    from dcgan.data.datasets import build_dataset

    cfg = make_config("dataset=mnist10k", "dataset.image_size=32", "dataset.limit=100")
    dataset = build_dataset(cfg.dataset, labels="class")
    values = dataset.labels.values
    loader, sampler = build_loader(LabelledImages(dataset, values), 16, 3, 0)
    feed = DeviceFeed(dataset.decoded(), 16, EpochShuffle(100, 3), torch.device("cpu"), values)
    order = list(EpochShuffle(100, 3))
    for number, ((a, la, _), (b, lb, _)) in enumerate(zip(loader, feed)):
        assert torch.equal(a, b) and torch.equal(la, lb)
        assert torch.equal(la, values[order[16 * number: 16 * number + 16]])


def test_an_unreadable_image_takes_its_label_with_it(tmp_path):
    from dcgan.data.loader import collate_batch

    images = [torch.zeros(1, 8, 8), (None, "bad.png"), torch.ones(1, 8, 8)]
    items = LabelledImages(_ListData(images), torch.tensor([4, 5, 6]))
    batch, labels, bad = collate_batch([items[i] for i in range(3)])
    assert batch.shape == (2, 1, 8, 8) and labels.tolist() == [4, 6] and bad == ["bad.png"]


class _ListData(torch.utils.data.Dataset):
    def __init__(self, items):
        self.items = items

    def __len__(self):
        return len(self.items)

    def __getitem__(self, index):
        return self.items[index]


# -- the pair ------------------------------------------------------------------------------

def conditional_pair(make_config, *overrides) -> GANPair:
    cfg = make_config("dataset=mnist10k", "dataset.image_size=32", "model.ngf=8", "model.ndf=8",
                      "model.nz=8", "condition=class", *overrides)
    seed_everything(cfg.seed)
    return GANPair(gan_settings(cfg, 4, DIGITS), torch.device("cpu"),
                   fake_labels=FakeLabels(DIGITS))


def test_a_conditional_pair_needs_labels_and_trains_with_them(make_config):
    pair = conditional_pair(make_config)
    real = torch.rand(8, 1, 32, 32) * 2 - 1
    with pytest.raises(DCGANError, match="trains on labelled images"):
        pair.train_step(real, 0)
    metrics = pair.train_step(real, 0, labels=torch.arange(8))
    assert all(torch.isfinite(value) for value in metrics.values())
    assert pair.state_dict()["labels"]["names"] == list(DIGITS.names)


@pytest.mark.parametrize("style", ["concat", "projection"])
@pytest.mark.parametrize("reg", [[], ["reg.r1.gamma=0.1", "reg.r1.interval=1",
                                      "reg.bcr.real=1", "reg.bcr.fake=1", "reg.lecam.weight=0.1"]])
def test_conditional_steps_replay_bit_for_bit(make_config, reg, style):
    def run(graphs: bool) -> dict:
        pair = conditional_pair(make_config, "augment=[translation]", "augment.p=0.5",
                                f"condition.style={style}", *reg)
        if graphs:
            pair.graphs = StepGraphs(pair, backend=ReplayOnCPU(), warmup=1)
        torch.manual_seed(5)
        batches = [(torch.rand(8, 1, 32, 32) * 2 - 1, torch.randint(10, (8,))) for _ in range(4)]
        for step, (real, labels) in enumerate(batches):
            pair.train_step(real, step, check_finite=False, labels=labels)
        return pair.generator.state_dict()

    eager, replayed = run(False), run(True)
    assert all(torch.equal(eager[name], replayed[name]) for name in eager)


def test_a_generator_file_keeps_the_labels(tmp_path):
    g, _ = build_models(conditional("attributes", 2))
    rows = torch.tensor([[1, 0], [0, 1]], dtype=torch.float32)
    prior = FakeLabels(LabelSpace("attributes", ("Smiling", "Male")), rows=rows)
    save_generator(g.state_dict(), conditional("attributes", 2).as_dict(),
                   tmp_path / "g.safetensors", labels=prior.state_dict())
    loaded = load_labels(tmp_path / "g.safetensors", torch.device("cpu"))
    assert loaded.space == prior.space and torch.equal(loaded.rows.float(), rows)


# -- the commands ------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def conditional_run(tmp_path_factory):
    """One tiny class-conditional run on the bundled digits, shared by the CLI tests here."""
    run_dir = tmp_path_factory.mktemp("runs") / "digits_by_class"
    run_cli("dcgan-train", *TINY, "dataset.image_size=32", "dataset.limit=256", "epochs=1",
            "condition=class", f"hydra.run.dir={run_dir}", check=True)
    return run_dir


def test_a_conditional_run_keeps_its_classes_and_draws_a_row_per_class(conditional_run):
    state = load_checkpoint(conditional_run / "checkpoints" / "last.pt")
    assert state["arch"]["condition"] == "class" and state["arch"]["label_size"] == 10
    assert state["labels"]["names"] == [str(d) for d in range(10)]
    with Image.open(conditional_run / "samples" / "epoch_001.png") as grid:
        columns, rows = grid.size[0] // 34, grid.size[1] // 34  # 32 px and a 2 px border
    assert (rows, columns) == (10, 8)
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(conditional_run)).Reload()
    accuracy = events.Scalars("metrics/class/accuracy")
    assert 0 <= accuracy[-1].value <= 1


def test_dcgan_sample_by_class_and_per_class(conditional_run, tmp_path):
    run_cli("dcgan-sample", "--ckpt", str(conditional_run), "--per-class", "3",
            "--out", str(tmp_path / "grid.png"), check=True)
    with Image.open(tmp_path / "grid.png") as grid:
        assert (grid.size[1] // 34, grid.size[0] // 34) == (10, 3)
    generator_file = conditional_run / "checkpoints" / "generator.safetensors"
    run_cli("dcgan-sample", "--ckpt", str(generator_file), "--class", "7", "--n", "4",
            "--out", str(tmp_path / "sevens.png"), check=True)
    assert (tmp_path / "sevens.png").is_file()


@pytest.mark.parametrize("args,message", [
    (["--class", "cat"], "unknown class 'cat'; the model knows 0, 1, 2"),
    (["--attrs", "Smiling"], "--attrs is for a model conditioned on attributes"),
    (["--class", "3", "--per-class", "2"], "--class and --per-class: choose one"),
])
def test_dcgan_sample_refuses_what_the_model_cannot_do(conditional_run, args, message):
    result = run_cli("dcgan-sample", "--ckpt", str(conditional_run), *args)
    assert message in user_error_line(result)


def test_dcgan_sample_refuses_a_class_of_an_unconditional_model(trained_run):
    result = run_cli("dcgan-sample", "--ckpt", str(trained_run), "--class", "3")
    assert "--class is for a conditional model" in user_error_line(result)


def test_resume_keeps_the_condition_and_refuses_to_drop_it(conditional_run, tmp_path):
    import shutil

    run_dir = tmp_path / "again"
    shutil.copytree(conditional_run, run_dir)
    refused = run_cli("dcgan-train", "resume=auto", f"hydra.run.dir={run_dir}", "condition=none")
    assert "cannot resume with condition=none" in user_error_line(refused)
    run_cli("dcgan-train", "resume=auto", f"hydra.run.dir={run_dir}", "epochs=2", check=True)
    assert load_checkpoint(run_dir / "checkpoints" / "last.pt")["epoch"] == 2


def test_init_from_an_unconditional_run_only_when_asked(trained_run, tmp_path):
    common = [*TINY, "epochs=1", "condition=class", f"init_from={trained_run}"]
    refused = run_cli("dcgan-train", *common, f"hydra.run.dir={tmp_path / 'a'}")
    assert "init_from_unconditional=true" in user_error_line(refused)
    run_cli("dcgan-train", *common, "init_from_unconditional=true",
            f"hydra.run.dir={tmp_path / 'b'}", check=True)
    source = load_checkpoint(trained_run / "checkpoints" / "last.pt")["generator"]
    started = load_checkpoint(tmp_path / "b" / "checkpoints" / "epoch_001.pt")
    assert started["arch"]["condition"] == "class"
    # G's first layer reads z and y (concat) and starts fresh; the next one came from the
    # unconditional run and moved only by a few Adam steps of lr 2e-4 since
    assert started["generator"]["main.0.weight"].shape != source["main.0.weight"].shape
    moved = (started["generator"]["main.3.weight"] - source["main.3.weight"]).abs().max()
    assert moved < 0.005 < source["main.3.weight"].abs().max()
    assert "copied the shared weights" in (tmp_path / "b" / "train.log").read_text()


@pytest.mark.parametrize("overrides,message", [
    (["dataset=fake", "condition=class"], "dataset=fake has no class labels"),
    (["condition=attributes"], "dataset=mnist10k has no attributes labels"),
    (["dataset.attributes=[Smiling]"], "dataset.attributes picks the attributes of condition"),
    (["condition=class", "condition.sample=often"], "condition.sample=often is not an option"),
])
def test_labels_the_data_cannot_give_are_refused_before_training(cli, tmp_path, overrides,
                                                                 message):
    result = cli("dcgan-train", *TINY, *overrides, f"hydra.run.dir={tmp_path / 'run'}")
    assert message in user_error_line(result)
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_a_folder_of_one_class_is_refused_in_one_line(cli, tmp_path):
    folder = tmp_path / "images" / "only"
    folder.mkdir(parents=True)
    for index in range(4):
        Image.new("RGB", (32, 32), (index * 40, 0, 0)).save(folder / f"{index}.png")
    result = cli("dcgan-train", *TINY, "dataset=folder", f"dataset.root={tmp_path / 'images'}",
                 "condition=class", f"hydra.run.dir={tmp_path / 'run'}")
    assert "has one class folder (only)" in user_error_line(result)


def test_dcgan_eval_reads_class_shares_of_an_unconditional_model(trained_run):
    result = run_cli("dcgan-eval", "--ckpt", str(trained_run), "--labels", "--n", "64",
                     check=True)
    scores = json.loads(result.stdout.strip().splitlines()[-1])
    assert scores["class/share_ratio"] >= 1 and 0 <= scores["class/share_min"] <= 0.1


@pytest.mark.slow
def test_faces_by_attribute_end_to_end(shared_data, tmp_path):
    run_dir = tmp_path / "faces"
    run_cli("dcgan-train", *TINY, "dataset=celeba", f"dataset.root={shared_data / 'celeba'}",
            "dataset.image_size=32", "dataset.limit=64", "epochs=1", "condition=attributes",
            "dataset.attributes=[Smiling,Male]", f"hydra.run.dir={run_dir}", check=True)
    state = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    assert state["labels"]["names"] == ["Smiling", "Male"] and state["labels"]["rows"].shape[1] == 2
    run_cli("dcgan-sample", "--ckpt", str(run_dir), "--attrs", "Smiling,-Male", "--n", "4",
            "--out", str(tmp_path / "smiling.png"), check=True)
    refused = run_cli("dcgan-sample", "--ckpt", str(run_dir), "--attrs", "Bald")
    assert "the model has no attribute 'Bald'; it knows Smiling, Male" in user_error_line(refused)
    unknown = run_cli("dcgan-train", *TINY, "dataset=celeba",
                      f"dataset.root={shared_data / 'celeba'}", "condition=attributes",
                      "dataset.attributes=[Smiling,Nope]", f"hydra.run.dir={tmp_path / 'x'}")
    assert "CelebA has no attribute 'Nope'" in user_error_line(unknown)


def test_labels_fit_the_networks():
    with pytest.raises(DCGANError, match="do not fit the networks"):
        GANPair(gan_settings_for(3), torch.device("cpu"),
                fake_labels=FakeLabels(DIGITS))


def gan_settings_for(label_size: int):
    from dcgan.training.settings import GANSettings

    return GANSettings(arch=conditional(size=label_size))


def test_a_conditional_export_takes_z_and_y(conditional_run, tmp_path):
    from dcgan.cli import export

    out = tmp_path / "generator.pt"
    run_cli("dcgan-export", "--ckpt", str(conditional_run), "--format", "torchscript",
            "--out", str(out), check=True)
    noise = export.check_noise(16, batch=2)
    fours = export.run_torchscript(out.read_bytes(), (noise, DIGITS.vectors(torch.tensor([4, 4]))))
    nines = export.run_torchscript(out.read_bytes(), (noise, DIGITS.vectors(torch.tensor([9, 9]))))
    assert fours.shape == (2, 1, 32, 32) and not torch.allclose(fours, nines)


def test_a_class_that_collapses_alone_is_named():
    from dcgan.training.collapse import CollapseDetector

    detector = CollapseDetector()
    assert detector.observe_class_diversity(10, {"3": 0.9, "7": 0.8}) is None
    verdict = detector.observe_class_diversity(20, {"3": 0.9, "7": 0.1})
    assert verdict.signal == "low_diversity" and "class 7 (0.100) collapsed alone" in verdict.message
    assert detector.observe_class_diversity(30, {"3": 0.9, "7": 0.1}) is None  # said once
    restored = CollapseDetector()
    restored.load_state_dict(detector.state_dict())
    assert restored.class_peaks == {"3": 0.9, "7": 0.8}


def test_evaluations_of_a_conditional_run_give_each_class_its_diversity(make_config):
    from dcgan.data.datasets import build_dataset
    from dcgan.quality.evaluator import Evaluator

    cfg = make_config("dataset=mnist10k", "dataset.image_size=32", "dataset.limit=200")
    dataset = build_dataset(cfg.dataset, labels="class")
    evaluator = Evaluator(dataset, 100, 8, 0, torch.device("cpu"))
    g, _ = build_models(conditional())
    fake = evaluator.generate(g.eval())
    from dcgan.quality.evaluator import per_class_diversity

    ratios = per_class_diversity(fake, evaluator.real, evaluator.real_labels)
    assert set(ratios) == {f"diversity/{d}" for d in range(10)}
    assert all(value > 0 for value in ratios.values())
