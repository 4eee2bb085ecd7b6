"""``python -m archive.cli``: the ``archive`` command."""

from archive.cli.app import main

main()
