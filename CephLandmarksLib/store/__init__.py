"""Model files and the model registry: the checked header (torch-free), the weights file, the shipped and per-user
models."""
