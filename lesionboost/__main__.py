"""``python -m lesionboost`` is the ``lesionboost`` command."""

from .cli import main

raise SystemExit(main())
