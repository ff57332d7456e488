"""Using the codes: export of a trained model, the search index and its HTML page."""
