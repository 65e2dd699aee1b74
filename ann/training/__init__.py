"""The trainer of `python -m ann.train`: config, data stream, loop, checkpoints, logging, export."""
