"""``vlprep-serve``: an OpenAI-compatible chat server, or a preprocessing gateway.

Examples::

    vlprep-serve --model ./Qwen2.5-VL-3B-Instruct --port 8000
    vlprep-serve --upstream http://127.0.0.1:8001/v1 --processor ./Qwen2.5-VL-3B-Instruct
    vlprep-serve --model ./ckpt --api-key-file key.txt --max-images 4 --allow-host cdn.example.com

Safe by default: ``FetchPolicy.strict()`` (no private or loopback addresses, no local
files), a 48 MiB body cap, 16 images and 2 videos per request, a 300 s deadline. See
``docs/serve.md``. Exit codes: 0 stopped, 1 a typed vlprep error at start (message on
stderr), 2 usage error or a missing extra.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from vlprep._errors import BackendUnavailableError, VlprepError
from vlprep._serve import ServeSettings, create_app, require
from vlprep._sources import FetchPolicy

__all__ = ["build_parser", "main", "settings_from_args"]

_MIB = 1024 * 1024


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vlprep-serve",
        description="OpenAI-compatible chat server for Qwen-VL (Qwen2-VL, Qwen2.5-VL, "
        "Qwen3-VL): a local checkpoint (--model) or a gateway in front of vLLM/SGLang "
        "(--upstream).",
    )
    backend = parser.add_mutually_exclusive_group(required=True)
    backend.add_argument("--model", help="checkpoint directory or hub id answered here")
    backend.add_argument("--upstream", help="OpenAI-compatible base URL (http://host:port/v1)")
    parser.add_argument(
        "--processor", help="gateway: the upstream model's processor directory or hub id"
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--served-model-name", help="the model id /v1/models lists")
    parser.add_argument("--api-key-file", type=Path, help="file holding the Bearer key")
    parser.add_argument("--api-key", help="the Bearer key (prefer --api-key-file)")
    parser.add_argument(
        "--allow-host",
        action="append",
        default=[],
        help="only these hosts may be fetched from (repeat; default: any public host)",
    )
    parser.add_argument(
        "--allow-private-networks",
        action="store_true",
        help="let media URLs reach private and loopback addresses (development only)",
    )
    parser.add_argument("--local-root", help="serve local media files beneath this folder")
    parser.add_argument("--max-images", type=int, default=16, help="images per request")
    parser.add_argument("--max-videos", type=int, default=2, help="videos per request")
    parser.add_argument("--max-body-mb", type=float, default=48.0, help="request body cap")
    parser.add_argument("--deadline", type=float, default=300.0, help="seconds per request")
    parser.add_argument("--max-queue", type=int, default=64, help="requests admitted at once")
    parser.add_argument("--preprocess-workers", type=int, default=4)
    parser.add_argument(
        "--max-batch", type=int, default=8, help="model mode: requests decoded together"
    )
    parser.add_argument(
        "--batch-window",
        type=float,
        default=0.02,
        help="model mode: seconds an idle engine waits for requests to start together",
    )
    parser.add_argument("--max-tokens", type=int, default=256, help="default answer length")
    parser.add_argument("--max-tokens-limit", type=int, default=4096)
    parser.add_argument(
        "--max-total-tokens",
        type=int,
        help="prompt + answer ceiling per request (model mode default: the model's context)",
    )
    parser.add_argument("--device", default="auto", help="model mode: auto, cpu, cuda, cuda:N")
    parser.add_argument("--dtype", default="auto", help="model mode: auto, float32, bfloat16")
    parser.add_argument("--upstream-model", help="gateway: the model name sent upstream")
    parser.add_argument("--upstream-api-key-file", type=Path, help="gateway: upstream's key")
    parser.add_argument("--upstream-timeout", type=float, default=600.0)
    parser.add_argument(
        "--upstream-video",
        choices=("frames", "bytes"),
        default="frames",
        help="gateway: videos as planned frames (frame list) or as the fetched file",
    )
    parser.add_argument("--log-level", default="info", help="debug, info, warning, error")
    return parser


def _key(path: Path | None, value: str | None) -> str | None:
    if path is not None:
        return path.read_text().strip() or None
    return value


def settings_from_args(args: argparse.Namespace) -> ServeSettings:
    """The :class:`ServeSettings` the arguments describe."""
    policy = FetchPolicy.strict(
        local_root=args.local_root,
        allowed_hosts=frozenset(args.allow_host) if args.allow_host else None,
    )
    if args.allow_private_networks:
        policy = policy.replace(allow_private_networks=True)
    return ServeSettings(
        model=args.model,
        upstream=args.upstream,
        processor=args.processor if args.processor or args.upstream is None else None,
        served_model_name=args.served_model_name,
        api_key=_key(args.api_key_file, args.api_key),
        policy=policy,
        max_images=args.max_images,
        max_videos=args.max_videos,
        max_body_bytes=int(args.max_body_mb * _MIB),
        deadline=args.deadline,
        max_queue=args.max_queue,
        preprocess_workers=args.preprocess_workers,
        max_batch=args.max_batch,
        batch_window=args.batch_window,
        default_max_tokens=args.max_tokens,
        max_tokens_limit=args.max_tokens_limit,
        max_total_tokens=args.max_total_tokens,
        device=args.device,
        dtype=args.dtype,
        upstream_model=args.upstream_model,
        upstream_api_key=_key(args.upstream_api_key_file, None),
        upstream_timeout=args.upstream_timeout,
        upstream_video=args.upstream_video,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        require()
    except BackendUnavailableError as exc:
        print(f"vlprep-serve: {exc}", file=sys.stderr)
        return 2
    import uvicorn

    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s %(name)s %(message)s")
    try:
        settings = settings_from_args(args)
        app = create_app(settings)
    except BackendUnavailableError as exc:
        print(f"vlprep-serve: {exc}", file=sys.stderr)
        return 2
    except (VlprepError, OSError) as exc:
        print(f"vlprep-serve: {exc}", file=sys.stderr)
        return 1
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, access_log=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
