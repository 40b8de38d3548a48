import pytest

from dcgan.config import validate
from dcgan.errors import DCGANError
from tests.conftest import user_error_line


def test_defaults_compose_to_the_paper_settings(make_config):
    cfg = make_config()
    assert cfg.dataset.name == "mnist10k" and cfg.dataset.channels == 1
    assert cfg.model.name == "dcgan"
    assert (cfg.model.nz, cfg.model.ngf, cfg.model.ndf) == (100, 64, 64)
    assert cfg.lr == pytest.approx(2e-4)
    assert (cfg.beta1, cfg.beta2) == (0.5, 0.999)
    assert cfg.batch_size == 128 and cfg.dataset.image_size == 64
    validate(cfg)


def test_overrides_from_the_shell(make_config):
    cfg = make_config("dataset=mnist", "lr=1e-4", "model.ngf=32", "epochs=20", "batch_size=64")
    assert cfg.dataset.name == "mnist" and cfg.dataset.root == "data/mnist"
    assert cfg.lr == pytest.approx(1e-4) and cfg.model.ngf == 32
    assert cfg.epochs == 20 and cfg.batch_size == 64
    validate(cfg)


@pytest.mark.parametrize("name,channels", [("celeba", 3), ("mnist", 1), ("mnist10k", 1), ("digits", 1),
                                           ("folder", 3), ("fake", 3)])
def test_every_dataset_composes(make_config, name, channels):
    cfg = make_config(f"dataset={name}")
    assert cfg.dataset.name == name and cfg.dataset.channels == channels
    validate(cfg)


def test_unknown_key_is_refused(make_config):
    with pytest.raises(DCGANError, match="bad override: .*epoch"):
        make_config("epoch=3")
    with pytest.raises(DCGANError, match="bad override: .*ngff"):
        make_config("model.ngff=3")


def test_unknown_group_option_is_refused(make_config):
    with pytest.raises(DCGANError, match="bad override: .*imagenet"):
        make_config("dataset=imagenet")


def test_wrong_type_is_refused(make_config):
    with pytest.raises(DCGANError, match="bad override"):
        make_config("epochs=many")
    with pytest.raises(DCGANError, match="bad override"):
        make_config("device=gpu")


@pytest.mark.parametrize("override,message", [
    ("epochs=0", "epochs must be at least 1"),
    ("lr=0", "lr must be positive"),
    ("lr=-1e-4", "lr must be positive"),
    ("batch_size=0", "batch_size must be at least 1"),
    ("dataset.image_size=48", "image_size=48 is not supported"),
    ("beta1=1.0", "beta1 must be in"),
    ("log_every=0", "log_every"),
    ("dataset.limit=0", "dataset.limit"),
    ("model.ngf=0", "model.ngf"),
    ("dataset.split=valid", "not a split of mnist10k"),
    ("dataset.channels=3", "not possible for mnist10k"),
    ("cuda_graphs=maybe", "cuda_graphs must be auto, true or false"),
])
def test_nonsense_values_are_refused(make_config, override, message):
    with pytest.raises(DCGANError, match=message):
        validate(make_config(override))


def test_cli_refuses_bad_values_before_reading_data(cli, tmp_path):
    # the data folder does not exist either: the config error must come first
    result = cli("dcgan-train", "dataset=celeba", f"dataset.root={tmp_path / 'none'}",
                 "epochs=0", f"hydra.run.dir={tmp_path / 'run'}")
    line = user_error_line(result)
    assert "epochs must be at least 1" in line


def test_cli_refuses_unknown_key_with_hydra_message(cli, tmp_path):
    result = cli("dcgan-train", "epoch=3", f"hydra.run.dir={tmp_path / 'run'}")
    assert result.returncode != 0
    assert "epoch" in result.stderr and "Traceback" not in result.stderr


def test_cli_refuses_unknown_group_option(cli, tmp_path):
    result = cli("dcgan-train", "dataset=imagenet", f"hydra.run.dir={tmp_path / 'run'}")
    assert result.returncode != 0
    assert "imagenet" in result.stderr


def test_cli_help_and_cfg_job(cli):
    help_text = cli("dcgan-train", "--help", check=True).stdout
    assert "dataset: celeba, cifar10, digits, fake, folder, mnist, mnist10k" in help_text
    job = cli("dcgan-train", "dataset=mnist", "lr=1e-4", "model.ngf=32", "--cfg", "job",
              check=True).stdout
    assert "name: mnist" in job and "lr: 0.0001" in job and "ngf: 32" in job
