"""``goldtrail serve``: run the API with uvicorn, settings from the environment."""

from __future__ import annotations

import sys

import uvicorn

from api.observability import configure_logging
from api.settings import Settings
from ledger.errors import IntegrityError


def serve(host: str = "127.0.0.1", port: int = 8000) -> int:
    """Run the server until interrupted; return a process exit code.

    Refuses to start, with one plain sentence on stderr and exit code 2, when the database
    holds another log than configured (PROTOCOL.md section 8).
    """
    from api.app import create_app

    configure_logging()
    try:
        settings = Settings()
        app = create_app(settings)
    except IntegrityError as e:
        print(f"goldtrail: cannot start: {e.detail}", file=sys.stderr)
        return 2
    except ValueError as e:  # bad settings
        print(f"goldtrail: cannot start: {e}", file=sys.stderr)
        return 2
    print(
        f"goldtrail: serving the log {settings.origin} on http://{host}:{port} "
        f"(database {settings.database_url})",
        file=sys.stderr,
    )
    uvicorn.run(app, host=host, port=port, log_config=None, access_log=False)
    return 0
