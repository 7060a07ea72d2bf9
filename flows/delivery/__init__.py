"""Delivering tasks to annotation platforms and harvesting annotations back."""
