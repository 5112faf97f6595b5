"""Datasets: loaders for the real public data and the synthetic affiliate world.

Nothing is imported here, so ``import recsys`` stays fast; import the module you need:

- ``recsys.datasets.paths``: where ``../shared/data`` is (``$RECSYS_SHARED_DATA`` overrides it).
- ``recsys.datasets.lightgcn``: LightGCN-format splits (Gowalla, Yelp2018, any ``train.txt``/``test.txt``).
- ``recsys.datasets.taobao``: the Taobao multi-behaviour purchase split and UserBehavior events.
- ``recsys.datasets.ali_ccp``: Ali-CCP, processed CSVs or the full public release (streamed).
- ``recsys.datasets.ranking_samples``: AliExpress and Taobao display-ad ranking samples.

Each loader takes a path and names the source and the PROVENANCE.md of its shared-data folder.
"""
