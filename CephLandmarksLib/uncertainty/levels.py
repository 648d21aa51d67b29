"""The levels at which uncertainty is reported, shared by the predictor, its result and training.
No torch: the detection result (read in Slicer's own process) needs them."""

LARGE_ERROR_MM = 4.0  # a radial error above this is "large": p_large_error is the chance of one
CONTOUR_LEVELS = ("50", "90")  # the credible regions drawn and calibrated, as their masses in per cent
NOMINAL_MASSES = {level: int(level) / 100 for level in CONTOUR_LEVELS}  # "50" -> 0.5, "90" -> 0.9
ERE_PIXEL_FLOOR = 0.05  # ERE drops the pixels below 5 % of the map's maximum, as the paper does
