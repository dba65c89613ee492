"""The bench scripts need a GPU to measure anything, but their pure-Python parts run here: every config is a
valid TrainConfig, the command line orders and checks the configs, the summary counts only the timed steps,
and the report writers draw their tables from result rows."""

import json
from types import SimpleNamespace

import pytest

from bench import common, gen_bench, report, serve_load, train_bench  # noqa: F401  (each must import)
from bench.train_measure import summarize

CONFIG_NAMES = [name for name in train_bench.CONFIGS if name != "reference"]


@pytest.mark.parametrize("name", CONFIG_NAMES)
@pytest.mark.parametrize("gpu", [True, False])
def test_every_config_is_a_valid_train_config(name, gpu, tmp_path, monkeypatch):
    monkeypatch.setattr(train_bench, "cuda", lambda: gpu)
    args = SimpleNamespace(train_csv="train.csv", work_dir=str(tmp_path))
    cfg = train_bench.coverlora_config(name, args, tmp_path / "ckpt", max_steps=5)
    assert (cfg.lora_r, cfg.lora_target_modules, cfg.max_steps) == (8, "q_proj,v_proj", 5)
    assert cfg.output_dir == str(tmp_path / f"run_{name}")
    if name.startswith("qlora_pack"):  # the packed configs keep the fp32 upcast, except the one that measures without
        assert cfg.kbit_upcast == ("none" if name.endswith("_bf16res") else "all")
    if gpu:
        assert cfg.quantization == ("none" if name.startswith("lora16") else "nf4")
        assert (cfg.attn_implementation == "flex_attention") == ("_flex" in name)
    else:  # the CPU smoke version of the same path
        assert (cfg.quantization, cfg.precision, cfg.use_liger_kernel) == ("none", "fp32", False)
        assert cfg.attn_implementation == "sdpa" and cfg.optimizer in ("auto", "adamw_torch")


def test_default_configs_exist_and_liger_runs_last():
    assert set(train_bench.DEFAULT_CONFIGS) <= set(train_bench.CONFIGS)
    args = train_bench.parse_args(["--configs", "t4_pack4k,reference,qlora_pack8k_liger,qlora_pack4k",
                                   "--train-csv", "train.csv"])
    assert args.configs == ["reference", "qlora_pack4k", "t4_pack4k", "qlora_pack8k_liger"]


def test_an_unknown_config_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as caught:
        train_bench.parse_args(["--configs", "reference,qlora_typo", "--train-csv", "train.csv"])
    assert caught.value.code == 2 and "qlora_typo" in capsys.readouterr().err


def test_summary_counts_only_the_timed_steps():
    # 1 warm-up + 2 timed optimizer steps of 2 micro-batches each; the clock reads at the end of each step.
    clock = SimpleNamespace(start=0.0, times=[5.0, 6.0, 8.0])
    collator = SimpleNamespace(real=[999, 999, 100, 200, 300, 400], supervised=[1] * 6, padded=[512] * 6)
    trainer = SimpleNamespace(state=SimpleNamespace(log_history=[{"loss": 2.0}, {"loss": 1.5}, {"eval_loss": 9}]))
    row = summarize("x", "what", collator, clock, trainer, 1, 2, 2, 0, 1.0, 2.0)
    assert (row["real_tokens"], row["timed_s"], row["tok_per_s"]) == (1000, 3.0, 333.3)
    assert (row["warmup_step_s"], row["step_s_median"], row["final_loss"]) == ([5.0], 1.5, 1.5)
    with pytest.raises(RuntimeError, match="only 3 steps ran, 4 needed"):
        summarize("x", "what", collator, clock, trainer, 2, 2, 2, 0, 1.0, 2.0)


def test_kernels_fall_into_categories_summed_largest_first():
    ms = {"vectorized_elementwise_kernel": 1.0, "sm90_xmma_gemm_bf16": 5.0, "flash_fwd_kernel": 3.0,
          "kgemm_4bit_inference": 2.0, "nvjet_tst_128x256": 1.5}
    assert list(common.ms_by_category(ms).items()) == [("matmul (GEMM)", 6.5), ("attention", 3.0),
                                                      ("nf4 dequant (bitsandbytes)", 2.0), ("other elementwise/reduce", 1.0)]


def train_rows() -> list[dict]:
    packed = {"config": "qlora_pack8k_flex_liger", "desc": "packed", "tok_per_s": 12500.0, "final_loss": 10.7,
              "peak_gib": 48.5, "peak_reserved_gib": 50.9, "settings": {"packing": True}, "step_s_median": 0.655,
              "boundary_check": {"packed_vs_separate_max_rel": 1e-3, "leaky_vs_separate_median_rel": 1.3, "ok": True},
              "profile": {"device_ms_per_step": 611.0, "ms_per_step_by_category": {"matmul (GEMM)": 279.0},
                          "top_kernels": [{"name": "nvjet_gemm", "ms_per_step": 90.5, "calls_per_step": 64}]}}
    return [{"config": "reference", "desc": "seed recipe", "tok_per_s": 625.0, "final_loss": 11.1},
            packed,
            {"config": "t4_pack4k", "desc": "t4", "tok_per_s": 6871.0, "final_loss": 10.9, "peak_gib": 16.2,
             "peak_reserved_gib": 17.0, "boundary_check": {"skipped": "one segment only"}},
            {"config": "lora16_pack8k_flex_liger", "status": "error", "error": "OutOfMemoryError: CUDA out of memory"}]


META = {"shape": "llama2-7b", "device": "NVIDIA H100 (80 GiB)", "command": "python bench/train_bench.py",
        "date": "2026-11-25 22:22:46", "versions": {"torch": "2.11.0", "bitsandbytes": None}, "data": "train.csv",
        "warmup": 2, "steps": 8}


def test_training_report_rows():
    text = report.train_markdown(train_rows(), META)
    assert "# Training bench: llama2-7b on NVIDIA H100 (80 GiB)" in text and "versions: torch 2.11.0\n" in text
    assert "| reference | 625 | 1.0x | – | 11.1 | n/a (unpacked) |  | seed recipe |" in text
    assert ("| qlora_pack8k_flex_liger | 12,500 | 20.0x | 48.5 (50.9) | 10.7 | ok (1.0e-03 vs leaky 1.3e+00) "
            "| >= 12,000: yes | packed |") in text
    assert "| t4_pack4k | 6,871 | 11.0x | 16.2 (17.0) | 10.9 | one segment only | peak <= 15 GiB: NO | t4 |" in text
    assert "| lora16_pack8k_flex_liger | – | – | – | – | – | – | error: OutOfMemoryError: CUDA out of memory |" in text
    assert "## Profile: qlora_pack8k_flex_liger (device time per optimizer step, 611.0 ms; wall 655 ms)" in text
    assert "| matmul (GEMM) | 279.0 |" in text and "| `nvjet_gemm` | 90.5 | 64 |" in text


def test_a_leak_is_flagged():
    row = dict(train_rows()[1], boundary_check={"packed_vs_separate_max_rel": 0.5, "leaky_vs_separate_median_rel": 1.3,
                                                "ok": False})
    assert "| LEAK? (5.0e-01 vs leaky 1.3e+00) |" in report.train_markdown([row], META)


def test_render_redraws_the_table_from_a_results_file(tmp_path, capsys):
    results = tmp_path / "run.jsonl"
    results.write_text("".join(json.dumps(r) + "\n" for r in train_rows()) + json.dumps({"meta": META}) + "\n")
    assert train_bench.main(["--render", str(results)]) == 0
    expected = report.train_markdown(train_rows(), META)
    assert (tmp_path / "run.md").read_text(encoding="utf-8") == expected
    assert capsys.readouterr().out == expected + "\n"


def test_generation_report_rows():
    meta = {**META, "data": "data/sample", "prompts": 349, "max_new_tokens": 512}
    rows = [{"config": "reference", "letters": 2, "new_tokens": 256, "seconds": 7.3, "tok_per_s": 35.1,
             "extrapolated_s_all": 10200, "note": "timed on 2 prompts"},
            {"config": "test.py kv_cache=static", "letters": 698, "new_tokens": 355940, "seconds": 143.3,
             "tok_per_s": 2484.6, "peak_gpu_gib": 54.9},
            {"config": "test.py kv_cache=static x2 processes", "error": "exit 1"},
            {"config": "decode steps, kv_cache=static", "batch": 88, "wall_ms_per_decode_step": 23.8,
             "tok_per_s_decode": 3696, "prefill_s": 0.41, "first_call_s": 43.5, "device_ms_per_decode_step": 19.8,
             "device_ms_by_category": {"attention": 13.9}, "top_kernels_ms_per_step": {"cudnn_sdpa": 13.9}}]
    text = report.gen_markdown(rows, meta)
    assert "- data: data/sample (349 test prompts; letters = prompts x 2 models)" in text
    assert "| reference | 2 | 256 | 7.3 | 35 | – | timed on 2 prompts = 2.8 h |" in text
    assert "| test.py kv_cache=static | 698 | 355,940 | 143.3 | 2,485 | 54.9 |  |" in text
    assert "| test.py kv_cache=static x2 processes | – | – | – | – | – | exit 1 |" in text
    assert "## Decode steps in-process (88 longest prompts, generate_batch)" in text
    assert "| static | 23.8 | 3,696 | 0.41 | 43.5 |" in text
    assert "| attention | 13.9 |" in text and "| `cudnn_sdpa` | 13.9 |" in text


def test_serve_load_percentile_interpolates():
    assert serve_load.percentile([4.0, 1.0, 3.0, 2.0], 0.5) == 2.5
    assert serve_load.percentile([1.0, 2.0], 0.95) == pytest.approx(1.95)


def test_the_verifier_sweep_averages_its_seeds_sentence_by_sentence():
    from bench import verifier_sweep

    seed_a = [([0.7, 0.1, 0.1, 0.1], 0.2), ([0.1, 0.1, 0.2, 0.6], 0.9)]
    seed_b = [([0.5, 0.3, 0.1, 0.1], 0.4), ([0.1, 0.1, 0.6, 0.2], 0.5)]
    averaged = verifier_sweep.average([seed_a, seed_b])
    assert [round(x, 6) for x in averaged[0][0]] == [0.6, 0.2, 0.1, 0.1] and round(averaged[0][1], 6) == 0.3
    assert [round(x, 6) for x in averaged[1][0]] == [0.1, 0.1, 0.4, 0.4] and round(averaged[1][1], 6) == 0.7
    assert verifier_sweep.average([seed_a]) == seed_a


def test_the_verifier_sweep_finds_a_configs_encoder_by_name_or_says_where_to(tmp_path):
    from bench import verifier_sweep
    from coverlora.errors import UserError

    minilm, mpnet = tmp_path / "r16", tmp_path / "mp-r16"
    for folder, marker in ((minilm, {"seconds": 1.0}), (mpnet, {"seconds": 2.0, "encoder": "all-mpnet-base-v2"})):
        folder.mkdir()
        (folder / verifier_sweep.TRAINED_FILE).write_text(json.dumps(marker))
    encoders = tmp_path / "encoders"
    assert verifier_sweep.encoder_of(minilm, None) is None  # the offline MiniLM
    with pytest.raises(UserError, match="all-mpnet-base-v2"):
        verifier_sweep.encoder_of(mpnet, str(encoders))
    (encoders / "all-mpnet-base-v2").mkdir(parents=True)
    assert verifier_sweep.encoder_of(mpnet, str(encoders)) == str(encoders / "all-mpnet-base-v2")


def test_the_verifier_sweep_scores_a_reader_alone_and_names_what_it_was_trained_on():
    from bench import verifier_sweep

    best_blend = verifier_sweep.best_blend  # train_verifier's
    val = [{"key": ("greedy", "train", row), "label": label, "specific": label == "unsupported"}
           for row, label in enumerate(["supported", "unsupported", "not_a_claim", "borrowed"])]
    perfect = [([0.1, 0.9, 0.0, 0.0], 0.0), ([0.0, 0.1, 0.1, 0.8], 0.9), ([0.9, 0.1, 0.0, 0.0], 0.0),
               ([0.0, 0.3, 0.6, 0.1], 0.1)]
    backwards = [([0.0, 0.0, 0.1, 0.9], 0.0), ([0.1, 0.9, 0.0, 0.0], 0.9), ([0.0, 0.0, 0.9, 0.1], 0.0),
                 ([0.9, 0.1, 0.0, 0.0], 0.1)]
    # the cross-encoder's own score, whatever the logistic reader it is blended with
    assert verifier_sweep.alone_f1(best_blend(val, backwards, perfect)[2]) == 1.0
    assert verifier_sweep.alone_f1(best_blend(val, perfect, backwards)[2]) == 0.0  # it flags only the two unflagged
    assert verifier_sweep.trained_on({"seconds": 1.0}) == ""
    assert verifier_sweep.trained_on({}) == ""  # choose --committed: the shipped reader has no marker
    assert verifier_sweep.trained_on({"seconds": 2.0, "encoder": "mpnet", "sample": 2000}) == " encoder mpnet sample 2000"


def test_the_encoder_speed_bench_reads_each_letter_as_the_verifier_pairs_it(tiny_encoder):
    from transformers import AutoModel, AutoTokenizer

    from bench import encoder_cpu_speed

    tokenizer = AutoTokenizer.from_pretrained(tiny_encoder, local_files_only=True)
    model = AutoModel.from_pretrained(tiny_encoder, local_files_only=True).eval()
    row = {"applicant_name": "Ana", "skillsets": "SQL", "job_title": "Analyst"}
    mean, median = encoder_cpu_speed.seconds_per_letter(model, tokenizer, [(["I know SQL.", "I led a team."], row)] * 3)
    assert 0 < median and 0 < mean < 5
