"""python -m infra.xsim --host 127.0.0.1 --port P [--fixtures DIR] [--seed N] [--window-seconds 900]"""

from __future__ import annotations

import argparse

import uvicorn

from .app import create_app


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m infra.xsim", description="X web GraphQL simulator")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8765)
    p.add_argument(
        "--fixtures",
        default=None,
        help="fixture dir (default: <repo>/../shared/fixtures/x, or $XGET_FIXTURES_DIR)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--window-seconds", type=int, default=900)
    p.add_argument("--log-level", default="warning")
    a = p.parse_args(argv)
    app = create_app(a.fixtures, a.seed, a.window_seconds)
    uvicorn.run(app, host=a.host, port=a.port, log_level=a.log_level, access_log=False)


if __name__ == "__main__":
    main()
