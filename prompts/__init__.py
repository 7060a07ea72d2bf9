"""Prompts: reading prompt files (JSONL, CSV) into records, the Jinja prompt templates, the ``prompts``
block of a run config, and the shipped examples (``examples/``) and templates (``templates/``)."""
