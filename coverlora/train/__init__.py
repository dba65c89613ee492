"""The train stage (train.py): QLoRA SFT with TRL (stage), the quality filter (filters), memory sizing (memory), logging (tracking)."""
