"""``recsys train`` as a tracked run: data -> stages -> Recommender -> bundle -> MLflow, resumable.

The stages themselves (features, two-tower, index, ranker) live in :mod:`recsys.fit`; this package
composes them into one MLflow run, saves the bundle and registers the model.
"""
