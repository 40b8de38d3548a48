"""What the loop calls at fixed points of training, one concept per module, each keeping its
own state (saved in the checkpoint under its `name`):

  checkpoints.py    cadence, retention, best.pt, last.pt, the file a non-finite loss leaves
  evaluation.py     the quality metrics every eval.every epochs
  collapse_guard.py the collapse detector, its policy (warn, stop, roll back) and the
                    stabilisers a rollback turned on
  samples.py        the fixed-noise grid each epoch and the real grid once
  replicas.py       under torchrun: all ranks hold the same weights
  bad_files.py      unreadable images: skip and report, or stop
"""

from dcgan.training.hooks.base import Hook, Interrupted, RollBack, Stop

__all__ = ["Hook", "Interrupted", "RollBack", "Stop"]
