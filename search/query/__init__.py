"""What a query asks: its window (k, offset, min_score), filters and their FAISS selector, several examples,
a region of the image, an image fetched from a URL."""
