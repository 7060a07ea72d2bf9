"""task_builder package."""
