"""The ``rlhf`` command line. (``app.py``; ``python -m flows.cli``)."""
