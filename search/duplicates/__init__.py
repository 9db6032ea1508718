"""Near-duplicate groups: pairs above a threshold from the index (``pairs``), confirmed by keypoints
(``keypoints``), grouped with the keeper check (``groups``)."""
