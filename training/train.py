"""Thin entry point for ``recsys train`` (the logic lives in recsys.pipeline.train):

    python training/train.py -c experiments/synthetic-demo.yaml
    python training/train.py retrieval -c experiments/gowalla.yaml --no-tracking
"""

from recsys.cli.train import train_app

if __name__ == "__main__":
    train_app(prog_name="recsys train")
