"""The HTTP service behind ``recsys serve``: FastAPI on uvicorn over one hot-swappable Recommender.

``app.py`` builds the app (:func:`recsys.service.app.create_app`), ``routes.py`` holds the endpoints and
``context.py`` what they share, ``holder.py`` the model and its swaps, ``keys.py`` the API keys, ``limits.py``
the concurrency limits and deadline, ``metrics.py`` the Prometheus metrics, ``schemas.py`` the JSON bodies,
``settings.py`` the settings.
Nothing here is imported by ``import recsys``; FastAPI loads only when the app is built.
"""
