"""``spark-submit`` entry of batch scoring: every user's feed, scored on the cluster, written by Spark as Parquet.

    spark-submit --master yarn serving/spark_score.py --model models:/guess-you-like@champion \\
        --out hdfs:///feeds/2026-12-07 --media-id guide-0

Uses the session spark-submit configured (master, executors, ``spark.pyspark.python``) and never stops it
early; the work is :func:`recsys.batch.spark.score_spark_job`. Every node needs the same recsys install (see
serving/README.md). Prints the manifest's summary as one JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="spark_score.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="a bundle directory or an MLflow URI (models:/name@alias)")
    p.add_argument("--out", required=True, help="output folder (a path or a URI Spark writes: hdfs://, s3a://)")
    p.add_argument("--media-id", default=None, help="one partner (default: every partner)")
    p.add_argument("--users", default=None, help="parquet/CSV file with a user_id column (default: audiences)")
    p.add_argument("--k", type=int, default=20, help="items per feed")
    p.add_argument("--nested", action="store_true", help="one row per user, the feed a list of structs")
    p.add_argument("--chunk-size", type=int, default=2048, help="users scored at once by a Python worker")
    p.add_argument("--restart", action="store_true", help="replace what --out holds")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    from pyspark.sql import SparkSession

    from recsys.batch.spark import score_spark_job
    from recsys.errors import RecsysError

    args = parse_args(argv)
    spark = SparkSession.builder.appName("recsys-score").getOrCreate()
    try:
        manifest = score_spark_job(args.model, args.out, media_id=args.media_id, users=args.users, k=args.k,
                                   nested=args.nested, chunk_size=args.chunk_size, restart=args.restart, spark=spark)
    except RecsysError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps({key: manifest[key] for key in ("rows", "users", "parts", "seconds")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
