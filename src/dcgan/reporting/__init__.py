"""What a run tells: loggers (TensorBoard, csv, wandb), its history read back, report.html and its curves, sweep summaries."""
