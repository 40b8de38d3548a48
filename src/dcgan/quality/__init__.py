"""How good and how varied the samples are: metrics (SWD, diversity, FID/KID) and the evaluator."""
