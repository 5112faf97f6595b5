"""``python -m recsys ...`` runs the ``recsys`` command; it is also how ``torchrun`` starts it:

    torchrun --standalone --nproc_per_node=2 -m recsys train retrieval -c experiments/synthetic-demo.yaml
"""

from recsys.cli import app

if __name__ == "__main__":
    app(prog_name="recsys")
