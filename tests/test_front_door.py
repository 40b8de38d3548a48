"""The commands' front door: a mistyped key, option or flag is one line on stderr naming what
was probably meant, with exit code 2; --help still prints the whole help. Nothing trains here."""

from __future__ import annotations

import argparse

import pytest

from tests.conftest import user_error_line
from dcgan.config import check_overrides, closest_keys
from dcgan.errors import DCGANError


@pytest.mark.parametrize("override,meant", [
    ("epoch=20", "did you mean epochs?"),
    ("model.ngf2=8", "did you mean model.ngf?"),
    ("+epoch=20", "did you mean epochs?"),
])
def test_train_names_the_key_meant(cli, tmp_path, override, meant):
    line = user_error_line(cli("dcgan-train", override, cwd=tmp_path))
    assert override in line and meant in line
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_train_still_composes_an_experiment(cli, tmp_path):
    # +experiment=NAME is a group added to the defaults: it composes, and validation (which
    # comes after composition) is what refuses epochs=0
    result = cli("dcgan-train", "+experiment=quickstart", "epochs=0",
                 f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert "epochs must be at least 1" in user_error_line(result)


def test_train_unknown_flag_and_help(cli, tmp_path):
    line = user_error_line(cli("dcgan-train", "--cgf", "job", cwd=tmp_path))
    assert "--cgf" in line and "did you mean --cfg?" in line
    help_text = cli("dcgan-train", "--help", cwd=tmp_path, check=True).stdout
    assert "dcgan-train" in help_text and "dataset: celeba" in help_text


@pytest.mark.parametrize("args,words", [
    (["--truncation", "0", "--ckpt", "x"], ["--truncation", "must be in (0, 1]"]),
    (["--ckpt", "x", "--trunction", "0.5"], ["--trunction", "did you mean --truncation?"]),
    ([], ["required", "--ckpt"]),
    (["--ckpt", "x", "--device", "gpu"], ["--device", "invalid choice"]),
])
def test_sample_usage_errors_are_one_line(cli, args, words):
    line = user_error_line(cli("dcgan-sample", *args))
    assert all(word in line for word in words), line


@pytest.mark.parametrize("command,args", [
    ("dcgan-eval", ["--ckpt", "x", "--nerest", "3"]),
    ("dcgan-export", ["--ckpt", "x", "--format", "tflite", "--out", "y"]),
    ("dcgan-report", []),
    ("dcgan-prepare", ["--root", "x"]),
    ("dcgan-prepare", ["datset=folder"]),
])
def test_every_command_refuses_in_one_line(cli, command, args):
    user_error_line(cli(command, *args))


@pytest.mark.parametrize("command", ["dcgan-sample", "dcgan-eval", "dcgan-export",
                                     "dcgan-report", "dcgan-prepare"])
def test_help_is_the_whole_help(cli, command):
    result = cli(command, "--help", check=True)
    assert result.stdout.startswith("usage:") and result.stderr == ""


@pytest.mark.parametrize("override,words", [
    ("ngf=8", ["model.ngf"]),
    ("dataset=celebb", ["did you mean celeba?", "mnist10k"]),
    ("dataset=imagenet", ["dataset has no option imagenet", "celeba", "mnist10k"]),
    ("+experiment=quickstar", ["did you mean quickstart?"]),
    ("experiment=quickstart", ["+experiment=quickstart"]),
    ("++epoch=20", ["did you mean epochs?"]),
    ("~epoch", ["did you mean epochs?"]),
    ("epochs=many", ["epochs=many", "Integer"]),
    ("device=gpu", ["device=gpu", "cpu"]),
    ("epochs=[1,", ["epochs=[1,"]),
    ("epochs", ["epochs", "key=value"]),
    ("dataset=celeba,mnst", ["did you mean mnist?"]),
])
def test_bad_overrides_are_named(override, words):
    with pytest.raises(DCGANError) as refused:
        check_overrides([override])
    message = str(refused.value)
    assert message.startswith("bad override: ") and "\n" not in message
    assert all(word in message for word in words), message


def test_good_overrides_pass():
    check_overrides(["+experiment=quickstart", "dataset=celeba", "model=dcgan", "epochs=20",
                     "model.ngf=8", "augment.ops=[color,cutout]", "dataset.limit=null",
                     "+dataset.limit=5", "logger=[tensorboard,csv]", "logger.0=csv",
                     "hydra.run.dir=/tmp/x", "hydra/job_logging=disabled", "lr=${lr_g}",
                     "dataset=celeba,mnist", "model.ngf=8,16", "reg.lecam.weight=0.1",
                     "collapse.policy=rollback", "augment.p=ada", "~init_from"])


def test_closest_keys_within_a_section():
    assert closest_keys("dataset.rot", within="dataset.") == "; did you mean dataset.root?"
    assert closest_keys("zzzz") == ""


def test_eval_names_the_data_set_key_meant():
    from dcgan.cli.evaluate import eval_config

    args = argparse.Namespace(overrides=["dataset.rot=/data"], n=None, seed=None, fid=False,
                              inception_weights=None)
    with pytest.raises(DCGANError, match="did you mean dataset.root"):
        eval_config(None, args)
    args.overrides = ["datset.root=/data"]
    with pytest.raises(DCGANError, match="dataset.KEY=VALUE.*did you mean dataset.root"):
        eval_config(None, args)
