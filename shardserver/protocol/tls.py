"""TLS server context for the HTTPS API port.

What it is: `make_server_context(certfile, keyfile)`, an ssl.SSLContext for
`--alternator-https-port`, configured like a modern HTTPS endpoint: TLS 1.2
or later, the platform's default cipher choice, no TLS compression, ALPN
offering HTTP/1.1 only (the server speaks nothing else).

What it owns: the context options and a clear error when the certificate or
key cannot be loaded.

What it must never do: open sockets, or print key material in an error.
"""

from __future__ import annotations

import os
import ssl


def make_server_context(certfile, keyfile=None, password=None) -> ssl.SSLContext:
    """A server-side SSLContext holding the certificate chain and key.

    `certfile` is a PEM file with the server certificate first, then any
    intermediates; `keyfile` the PEM private key (None if it is inside
    `certfile`).  Raises ValueError naming the files when they cannot be used.
    """
    for label, path in (("certificate", certfile), ("key", keyfile)):
        if path is not None and not os.path.isfile(path):
            raise ValueError(f"TLS {label} file {path} does not exist or is not a file")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
    try:
        ctx.load_cert_chain(certfile, keyfile, password)
    except ssl.SSLError as e:
        raise ValueError(
            f"cannot load TLS certificate {certfile} with key {keyfile or certfile}: "
            f"{e.reason or e}"
        ) from None
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx
