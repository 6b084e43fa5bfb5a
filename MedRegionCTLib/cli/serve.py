"""`medregionct serve`: the report server (FastAPI + uvicorn) around a model checkpoint."""

from __future__ import annotations

from ..errors import InputError


def add_parser(sub) -> None:
    p = sub.add_parser(
        "serve", help="serve a report model over HTTP (GPU backend for Slicer and `report --server`)",
        description="Serve a region report model over HTTP: versioned endpoints under /v1 (health, model, jobs, "
                    "job events as server-sent events, result, cancel), OpenAPI schema at /openapi.json. Listening "
                    "beyond loopback needs --api-keys. For TLS give --ssl-keyfile and --ssl-certfile (passed to "
                    "uvicorn), or keep the default 127.0.0.1 and put a TLS reverse proxy in front (with response "
                    "buffering off for the event stream). SIGINT/SIGTERM drain the queue: every job is finished or "
                    "failed explicitly before the server exits.")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--model", metavar="DIR",
                      help="checkpoint folder written by save_pretrained or `medregionct import-reg2rg`, or 'tiny' "
                           "(random tiny model, CPU test mode)")
    what.add_argument("--llm", metavar="DIR",
                      help="a local instruction-tuned LLM folder with a chat template (Llama-3.x-Instruct, "
                           "Qwen2.5-Instruct, MedGemma, ...): it writes each region from the measured facts the client "
                           "sends (zero-shot, no image); the client checks the text against its measurements")
    p.add_argument("--llm-path", metavar="DIR", default=None,
                   help="with --model: the base language model folder on this machine (overrides the one the "
                        "checkpoint names)")
    p.add_argument("--device", default="auto", help="cuda, cuda:N or cpu (default: cuda when available)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    p.add_argument("--port", type=int, default=8750, help="port (default: %(default)s)")
    p.add_argument("--api-keys", metavar="FILE", help="file with one API key (bearer token) per line; required "
                                                      "when --host is not a loopback address")
    p.add_argument("--schema", default="radgenome10", help="region schema the model reports on (default: "
                                                           "%(default)s)")
    p.add_argument("--max-queue", type=int, default=64, help="jobs that may wait; more get 429 (default: "
                                                             "%(default)s)")
    p.add_argument("--max-batch", type=int, default=4, help="CTs batched into one generate call (default: "
                                                            "%(default)s)")
    p.add_argument("--max-request-mb", type=float, default=256.0, help="largest request body in MB (default: "
                                                                       "%(default)s)")
    p.add_argument("--job-timeout", type=float, default=600.0, help="seconds a job may take from submission to "
                                                                     "result (default: %(default)s)")
    p.add_argument("--upload-timeout", type=float, default=300.0, help="seconds a request body may take to arrive "
                                                                       "(default: %(default)s)")
    p.add_argument("--drain-timeout", type=float, default=60.0, help="seconds to finish queued jobs on shutdown "
                                                                      "before failing them (default: %(default)s)")
    p.add_argument("--rows-per-generate", type=int, default=None,
                   help="sequences per generate() call (default: the model's generation.batch_size)")
    p.add_argument("--ssl-keyfile", metavar="PEM", help="TLS private key (uvicorn --ssl-keyfile)")
    p.add_argument("--ssl-certfile", metavar="PEM", help="TLS certificate chain (uvicorn --ssl-certfile)")
    p.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    p.set_defaults(func=run)


def run(args) -> int:
    from ..server.app import ServerSettings
    from ..server.run import serve

    for name in ("max_queue", "max_batch", "max_request_mb", "job_timeout", "upload_timeout"):
        if getattr(args, name) <= 0:
            raise InputError(f"--{name.replace('_', '-')} must be positive, got {getattr(args, name)}.")
    settings = ServerSettings(max_request_bytes=int(args.max_request_mb * (1 << 20)), max_queue=args.max_queue,
                              max_batch=args.max_batch, job_timeout_s=args.job_timeout,
                              drain_timeout_s=args.drain_timeout, upload_timeout_s=args.upload_timeout)
    if args.llm_path and not args.model:
        raise InputError("--llm-path goes with --model (the checkpoint's base LM); with --llm give the folder itself.")
    serve(args.model, host=args.host, port=args.port, device=args.device, schema=args.schema,
          api_keys_file=args.api_keys, settings=settings, ssl_keyfile=args.ssl_keyfile,
          ssl_certfile=args.ssl_certfile, log_level=args.log_level, rows_per_generate=args.rows_per_generate,
          llm=args.llm, llm_path=args.llm_path)
    return 0
