"""moto_server without one per-request cost that no real S3 server has.

For every request, moto 5's dispatcher (`moto_server/werkzeug_app.py`) decides which service
answers by listing moto's package directory and stat-ing each of its ~200 entries
(`moto.backends.list_of_moto_modules`), under a lock that serialises all requests: about a
quarter of moto's CPU per object PUT here (py-spy, 2.9 → 2.2 ms per PUT without it). That
list cannot change while the server runs, so it is computed once; everything else is
moto_server as shipped. On a moto without that function, moto runs unchanged.

    python infra/moto_server.py -H 127.0.0.1 -p PORT   # same arguments as moto_server
"""

from __future__ import annotations

import sys


def main() -> int | None:
    try:
        from moto import backends

        modules = tuple(backends.list_of_moto_modules())
        backends.list_of_moto_modules = lambda: modules
    except (ImportError, AttributeError):
        pass
    from moto.server import main as moto_main

    sys.argv[0] = "moto_server"
    moto_main()
    return 0


if __name__ == "__main__":
    del sys.path[0]  # this script's own directory (infra/): nothing there may shadow moto's imports
    sys.exit(main())
