"""Measurements from the 19 landmarks (angles, distances, their classes) and their intervals sampled from the heatmaps.
No torch."""
