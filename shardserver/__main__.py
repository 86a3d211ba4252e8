import sys

from shardserver.cli import main

sys.exit(main())
