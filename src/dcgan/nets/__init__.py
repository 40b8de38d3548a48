"""The networks and what they compute: generator and discriminator, losses, what D sees (augmentation), the moving average of G, BatchNorm re-estimation, latent draws."""
