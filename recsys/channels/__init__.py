"""Recall channels (多路召回) behind one interface; see :mod:`recsys.channels.base`."""
