"""Figures from arrays (spectra, cumulative variance, LID histograms, correlation heatmaps, 2-D maps), below
both ``analysis`` and ``report``: each draws with these and neither imports the other for it."""
