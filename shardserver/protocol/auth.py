"""Request authentication for the API front: SigV4 against the credentials file.

Holds the credentials read from ``--alternator-credentials-file`` (re-read
on SIGHUP) and checks each request with ``sigv4.verify`` on the body bytes
exactly as received.  Never logs a secret.
"""

from __future__ import annotations

import logging

from shardserver.protocol import sigv4

log = logging.getLogger("shardserver.auth")


class Authenticator:
    def __init__(self, credentials_file: str):
        self.credentials_file = credentials_file
        self.credentials = sigv4.load_credentials(credentials_file)

    def reload(self) -> None:
        try:
            self.credentials = sigv4.load_credentials(self.credentials_file)
        except (OSError, ValueError) as exc:
            log.error("keeping the previous credentials: %s", exc)
            return
        log.info("re-read %d credentials from %s", len(self.credentials), self.credentials_file)

    def __call__(self, request) -> str:
        path, _, query = request.path.decode("latin-1").partition("?")
        return sigv4.verify(request.method.decode("latin-1"), path, query, request.raw_headers,
                            request.body, self.credentials)
