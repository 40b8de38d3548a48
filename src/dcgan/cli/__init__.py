"""The commands: dcgan-train (Hydra), dcgan-sample, dcgan-eval, dcgan-export, dcgan-prepare, dcgan-report."""
