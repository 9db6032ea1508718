"""The commands that read an index folder: search, info, classify, evaluate, duplicates (``commands``), explain."""
