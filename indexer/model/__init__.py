"""The model: backbone registry, EfficientNet-Lite in Keras, offline weights, inference runtimes, the embedder."""
