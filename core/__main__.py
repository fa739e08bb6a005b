"""``python -m credenza``: the same as the ``credenza`` command."""

from credenza.entry import main

main()
