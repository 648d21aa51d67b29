"""The predictor (radiograph -> Detection) and the detection result it writes, which Slicer reads without torch."""
