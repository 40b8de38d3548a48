"""Training: the adversarial pair and its step (CUDA graphs too), the loop, its hooks, and the collapse detector."""
