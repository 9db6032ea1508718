"""Why is this similar: a match's score split over the feature map's cells (``explainer``)."""
