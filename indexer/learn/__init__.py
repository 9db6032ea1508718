"""Fitting on embeddings (classifiers, PCA-whitening): pure functions of arrays, no folder access."""
