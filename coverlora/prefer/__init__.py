"""The preference stage (prefer.py): pairs from the SFT model's own letters on the training rows (pairs), then DPO
on the SFT adapter against a frozen copy of it (stage)."""
