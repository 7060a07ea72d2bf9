"""Annotation platforms: deliver task shells to them and harvest the annotations back."""
