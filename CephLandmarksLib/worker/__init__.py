"""The long-lived detection worker that Slicer's Detect talks to: `serve.py` runs jobs read from stdin
in one process that keeps torch and the model loaded; `protocol.py` is the torch-free line format both
sides speak."""
