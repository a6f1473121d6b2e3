"""One training run: the pipeline (train, test, record), what it builds (build.py), the LightningModule, the paper's
optimizer and schedules, callbacks, checkpoints, resumption, loggers and what it prints."""
