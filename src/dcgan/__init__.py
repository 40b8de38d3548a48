"""dcgan: train the classic DCGAN (Radford et al., 2016) from the command line."""

__version__ = "0.1.0"
