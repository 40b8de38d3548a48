"""Data sets as batches of images in [-1, 1]: the registry, labels, CIFAR-10's files, the
decoded-image cache, the loader and device feed."""
