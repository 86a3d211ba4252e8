"""The ``shardserver`` command: start the server, or check the system.

``shardserver [options]`` (or ``shardserver serve``) starts the supervisor;
``shardserver check`` reports the kernel settings the server needs.
"""

from __future__ import annotations

import argparse
import sys

from shardserver import config as config_module


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "check":
        from shardserver.check import main as check_main
        return check_main(argv[1:])
    if argv and argv[0] == "serve":
        argv = argv[1:]
    parser = argparse.ArgumentParser(
        prog="shardserver",
        description="A DynamoDB-compatible database server, one shard per CPU core. "
                    "Subcommands: serve (default), check.")
    config_module.add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        config = config_module.from_args(args)
    except (ValueError, OSError) as exc:
        parser.error(str(exc))
    from shardserver.supervisor import serve
    return serve(config)


if __name__ == "__main__":
    sys.exit(main())
