"""Checkpoints: atomic, digested, loaded safely; the resume search; the generator file."""
