"""Where the code runs: the device, seeds and RNG snapshots, stop signals, and the torchrun process group."""
