"""Generation: the ``generate_tasks`` flow, what prepares and writes a run, and how it stops."""
