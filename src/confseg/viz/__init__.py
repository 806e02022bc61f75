"""Figures only: arrays in, PNG out (progress curves, reliability diagrams, overlays)."""
