"""Running the server: API keys, the loopback rule, TLS pass-through, graceful shutdown, a thread for tests."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import socket
import threading
import time
from pathlib import Path

from ..errors import InputError
from .app import ServerSettings, create_app

log = logging.getLogger("medregionct.server")
MIN_KEY_CHARS = 16


def is_loopback(host: str) -> bool:
    if host in ("localhost", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def load_api_keys(path) -> tuple[str, ...]:
    """One key per line; blank lines and lines starting with '#' are ignored. Keys are never logged."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise InputError(f"cannot read the API key file {path} ({exc.strerror}); give a text file with one key "
                         "per line.") from None
    keys = tuple(line.strip() for line in lines if line.strip() and not line.strip().startswith("#"))
    if not keys:
        raise InputError(f"the API key file {path} holds no key; add one key per line (e.g. the output of "
                         "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`).")
    for i, key in enumerate(keys, 1):
        if len(key) < MIN_KEY_CHARS or any(c.isspace() for c in key):
            raise InputError(f"API key number {i} in {path} is shorter than {MIN_KEY_CHARS} characters or holds "
                             "spaces; use long random keys (secrets.token_urlsafe(32)).")
    if os.name == "posix" and path.stat().st_mode & 0o077:
        log.warning("the API key file %s is readable by other users; chmod 600 it", path)
    return keys


def check_exposure(host: str, keys: tuple[str, ...], tls: bool) -> None:
    """Refuse to listen beyond loopback without API keys; warn when keys would travel without TLS."""
    if not is_loopback(host) and not keys:
        raise InputError(f"refusing to listen on {host} without API keys: anyone on the network could use the "
                         "model; give --api-keys FILE (one key per line), or listen on 127.0.0.1.")
    if not is_loopback(host) and not tls:
        log.warning("listening on %s without TLS: API keys and payloads travel in clear text; pass --ssl-keyfile "
                    "and --ssl-certfile, or put the server behind a TLS reverse proxy", host)


class GracefulServer:
    """uvicorn.Server that drains the job queue before it closes connections, so streams see every job end."""

    def __new__(cls, config, manager, drain_timeout_s: float):
        import uvicorn

        class _Server(uvicorn.Server):
            async def shutdown(self, sockets=None):
                await asyncio.to_thread(manager.drain, drain_timeout_s)
                await super().shutdown(sockets=sockets)

        return _Server(config)


def build(model: str | None = "tiny", device: str | None = None, schema: str = "radgenome10",
          settings: ServerSettings | None = None, rows_per_generate: int | None = None, llm=None,
          llm_path=None):
    """The engine and the FastAPI app (no socket opened): a report model checkpoint (``model``) or a local
    instruction-tuned LLM folder (``llm``). ``llm_path`` overrides the checkpoint's base LM folder."""
    from .engine import load_engine, load_llm_engine

    settings = settings or ServerSettings()
    if (model is None) == (llm is None):
        raise InputError("give either --model (a report model checkpoint) or --llm (an instruction-tuned LLM folder).")
    if llm is not None:
        engine = load_llm_engine(llm, device=device, schema=schema)
    else:
        engine = load_engine(model, device=device, schema=schema, rows_per_generate=rows_per_generate,
                             llm_path=llm_path)
    app = create_app(engine, settings)
    return engine, app


def serve(model: str | None, host: str = "127.0.0.1", port: int = 8750, device: str | None = None,
          schema: str = "radgenome10", api_keys_file=None, settings: ServerSettings | None = None,
          ssl_keyfile=None, ssl_certfile=None, ssl_keyfile_password=None, log_level: str = "info",
          rows_per_generate: int | None = None, llm=None, llm_path=None) -> None:
    """Load the model and serve it until SIGINT/SIGTERM (then drain: finish or fail every job)."""
    import uvicorn

    settings = settings or ServerSettings()
    keys = load_api_keys(api_keys_file) if api_keys_file else ()
    if bool(ssl_keyfile) != bool(ssl_certfile):
        raise InputError("TLS needs both --ssl-keyfile and --ssl-certfile; give both or neither.")
    for path in (ssl_keyfile, ssl_certfile):
        if path and not Path(path).is_file():
            raise InputError(f"TLS file {path} does not exist; give the PEM key and certificate files.")
    check_exposure(host, keys, tls=bool(ssl_certfile))
    settings.api_keys = keys
    logging.basicConfig(level=getattr(logging, log_level.upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    engine, app = build(model, device=device, schema=schema, settings=settings, rows_per_generate=rows_per_generate,
                        llm=llm, llm_path=llm_path)
    config = uvicorn.Config(app, host=host, port=port, log_level=log_level, ssl_keyfile=ssl_keyfile,
                            ssl_certfile=ssl_certfile, ssl_keyfile_password=ssl_keyfile_password,
                            timeout_graceful_shutdown=5, proxy_headers=False, server_header=False)
    server = GracefulServer(config, app.state.manager, settings.drain_timeout_s)
    scheme = "https" if ssl_certfile else "http"
    log.info("report server on %s://%s:%d/v1 (model %s, %s, API keys: %s)", scheme, host, port, engine.version,
             engine.device, f"{len(keys)} configured" if keys else "none (loopback only)")
    server.run()


class ServerThread:
    """A real uvicorn server on 127.0.0.1 (a free port) in a background thread: for tests and benchmarks."""

    def __init__(self, app, host: str = "127.0.0.1", drain_timeout_s: float = 10.0, log_level: str = "warning"):
        import uvicorn

        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://{host}:{self.port}"
        config = uvicorn.Config(app, host=host, port=self.port, log_level=log_level, timeout_graceful_shutdown=2,
                                backlog=2048)
        self.server = GracefulServer(config, app.state.manager, drain_timeout_s)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def start(self, timeout: float = 30.0) -> ServerThread:
        self.thread.start()
        end = time.monotonic() + timeout
        while not self.server.started:
            if time.monotonic() > end or not self.thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.02)
        return self

    def stop(self, timeout: float = 30.0) -> None:
        self.server.should_exit = True
        self.thread.join(timeout)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
