"""Sharded generation: the parent flow that runs one shard per work-pool run and merges them."""
