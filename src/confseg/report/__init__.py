"""HTML pages rendered from folders; never runs a model."""
