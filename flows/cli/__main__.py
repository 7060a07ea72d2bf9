"""``python -m flows.cli``: the ``rlhf`` command."""

from flows.cli.app import main

main()
