"""Annotated image sets on disk: the ISBI 2015 layout and the generic CSV, read for training and written by a clinic.
No torch."""
