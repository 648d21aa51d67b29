"""What a heatmap says about its point: expected radial error, P(error > 4 mm), credible regions and the flag score."""
