"""Allows ``python -m refsync``."""

from refsync.cli import main

if __name__ == "__main__":
    main()
