"""Data sets as batches of images in [-1, 1]: the registry, the decoded-image cache, the loader and device feed."""
