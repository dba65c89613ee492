"""A run folder: its layout and atomic writes (layout), the trained run it holds (trained), its model card (card) and
publishing it to the hub (publish)."""
