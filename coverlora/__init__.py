"""coverlora: fine-tune a language model to write grounded cover letters (QLoRA SFT, merge, generate, evaluate)."""

__version__ = "0.1.0"
