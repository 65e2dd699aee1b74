"""Analyses of a trained ANN over many images (the app's single-image views, aggregated)."""
