"""Clinic adaptation: per-clinic temperatures, regions, convention offsets and the optional fine-tune, and its
report."""
