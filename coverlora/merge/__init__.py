"""The merge stage (merge.py): fold the adapter into the full-precision base and check the merged logits (stage)."""
