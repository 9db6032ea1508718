"""Indexing: decode images, embed with a pretrained CNN, write Parquet shards and a FAISS index."""
