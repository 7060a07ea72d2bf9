"""What a run tells: the summary, the live display, the Prefect report, notifications, plan and status."""
