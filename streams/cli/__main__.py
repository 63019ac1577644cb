"""``python -m streams.cli``: the ``dragoman`` command."""

from streams.cli import main

main()
