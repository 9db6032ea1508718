"""The jobs that write an index folder: the indexing run (local and Spark), remove, repair, heads, whitening."""
