"""``python -m credenza``: the same as the ``credenza`` command."""

from credenza.cli import main

main()
