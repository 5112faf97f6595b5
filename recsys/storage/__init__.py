"""Saved artifacts on disk: atomic checksummed directories, signing, and the bundle format.

Nothing here knows the Recommender or MLflow: a bundle is written from, and read into, callbacks that
the caller passes (:mod:`recsys.recommender_io` for a Recommender).
"""
