"""How good and how varied the samples are: metrics (SWD, diversity, FID/KID), a classifier of
real labelled images (GAN-test accuracy, class shares) and the evaluator."""
