"""``python -m emolingua``: the same as the ``emolingua`` command."""

from emolingua.cli import main

main()
