"""The HTTP service as an ASGI app for deployments that run uvicorn (or another ASGI server) themselves:

    RECSYS_SERVE_MODEL=models:/guess-you-like@champion RECSYS_SERVE_KEYS=/etc/recsys/keys.yaml \\
        uvicorn serving.app:app --host 0.0.0.0 --port 8000 --workers 4

Settings come from the environment (``recsys.service.settings.ServiceSettings.from_env``: RECSYS_SERVE_MODEL,
RECSYS_SERVE_KEYS, RECSYS_SERVE_POLL_SECONDS, RECSYS_SERVE_MAX_CONCURRENCY, RECSYS_SERVE_MAX_QUEUE,
RECSYS_SERVE_DEADLINE_S, RECSYS_SERVE_JOURNAL, RECSYS_SERVE_WARM, RECSYS_SERVE_THREADS: intra-op threads per
worker, 1 unless set). This entry cannot see which address the server binds, so it always needs keys
(RECSYS_SERVE_KEYS, or RECSYS_ADMIN_KEY / RECSYS_PARTNER_KEYS); for a keyless local service use ``recsys serve``
on 127.0.0.1.
"""

from recsys.errors import ConfigError
from recsys.service.app import create_app
from recsys.service.keys import keys_from_env, load_keys
from recsys.service.settings import ServiceSettings
from recsys.threads import limit_threads

settings = ServiceSettings.from_env()
keys = load_keys(settings.keys) if settings.keys else keys_from_env()
if keys is None:
    raise ConfigError("serving.app needs API keys: set RECSYS_SERVE_KEYS to a keys.yaml (admin: KEY, partners: "
                      "{ID: KEY}) or RECSYS_ADMIN_KEY / RECSYS_PARTNER_KEYS")
limit_threads(settings.threads)  # each uvicorn worker imports this module in its own process
app = create_app(settings, keys=keys)
