"""``imgsearch evaluate``: retrieval and classification metrics (``metrics``), the HTML report and its plots."""
