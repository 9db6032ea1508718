"""Search an imgsearch index folder: SearchEngine, evaluation, CLI."""
