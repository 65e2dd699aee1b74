"""Gradio app for exploring an ANN checkpoint; all model logic lives in ann/ (ann.analysis.explore)."""
