"""Batch scoring: every user's feed for a partner, written as Parquet parts, on one machine or on Spark.

- :mod:`.rows`: the rows a batch job writes (one per user and rank, or one per user with ``nested``),
  the same for the local job and Spark;
- :mod:`.job`: the local job (``recsys score``): a deterministic plan of chunks, each an atomic Parquet part,
  resumed after a kill, refused over changed inputs; :mod:`.parts` its files (parts, ``_job.json``, manifest);
- :mod:`.spark`: the same rows on Spark (``mapInPandas``, written by Spark's Parquet writer); :mod:`.spark_worker`
  its executor side (the shipped bundle, verified and loaded once per Python worker).
"""
