"""The GPU report server (FastAPI + uvicorn, torch): ``medregionct serve --model DIR``.

Endpoints (all under ``/v1``; the OpenAPI schema is at ``/openapi.json``):

====================================  ==============================================================
``GET    /v1/health``                  liveness (no key needed)
``GET    /v1/model``                   region schema, input grid, exact preprocessing, payload format
                                       and version, limits, model version
``POST   /v1/jobs``                    submit one prepared case (binary, :mod:`MedRegionCTLib.client.codec`)
``GET    /v1/jobs/{id}``               state and progress
``GET    /v1/jobs/{id}/events``        server-sent events: progress, each region paragraph, the end
``GET    /v1/jobs/{id}/result``        the region paragraphs
``DELETE /v1/jobs/{id}``               cancel
====================================  ==============================================================

Security: API keys (bearer tokens, ``--api-keys FILE``, one per line) are required whenever the server
listens beyond loopback (it refuses to start otherwise), are compared with ``hmac.compare_digest`` and never
logged. TLS: pass ``--ssl-keyfile key.pem --ssl-certfile cert.pem`` (handed to uvicorn), or listen on
127.0.0.1 behind a TLS reverse proxy (nginx/Caddy: ``proxy_pass http://127.0.0.1:8750;`` with
``proxy_buffering off;`` so the event stream is not held back).

Everything here but :mod:`.app`/:mod:`.jobs` imports torch only when a model is loaded.
"""

from .app import ServerSettings, create_app
from .run import ServerThread, serve

__all__ = ["ServerSettings", "ServerThread", "create_app", "serve"]
