"""Publishing a version of an index folder: building and tuning its FAISS index and the heads' indexes."""
