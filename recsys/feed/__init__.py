"""Serving pieces the :class:`recsys.recommender.Recommender` composes.

- :mod:`.catalogue`: item attributes by position (stock, eligibility, category, price, rate);
- :mod:`.rules`: the business rules, one implementation for evaluation and serving;
- :mod:`.fallback`: cold start (features-only user tower or what is popular with a partner's audience);
- :mod:`.reasons`: the short reason shown beside each item, from what drove its score;
- :mod:`.users`: per-user serving state (tower inputs, history, purchases, segments);
- :mod:`.engine`: one vectorised pass retrieve -> rank -> rules -> reasons for a batch of requests;
- :mod:`.training`: the convenience ``Recommender.fit`` that trains every component on small data.

Nothing here is imported by ``import recsys``.
"""
