"""The test stage (test.py): letters for every test row (stage), decoded in length-sorted batches (batched), on the
slot engine (engine, slots), with vLLM (vllm) or as grounded-decoding candidates (candidates); models located in a
run folder (loading); finished rows kept across a kill (partials)."""
