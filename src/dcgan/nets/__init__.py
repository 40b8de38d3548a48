"""The networks and what they compute: generator and discriminator (unconditional, or
conditioned on labels), losses and regularisers, what D sees (augmentation), the moving average
of G, BatchNorm re-estimation, latent draws."""
