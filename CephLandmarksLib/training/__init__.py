"""Training, the held-out calibration, cross-validation folds, evaluation and the scoring they share."""
