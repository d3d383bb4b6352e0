"""``python -m lesionboost`` is the ``lesionboost`` command."""

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
