"""The helper scripts as a user runs them: clean, filter (with reasons), compute (with leakage)."""

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
from conftest import make_row, write_csv

from coverlora.fields import COLUMNS

ROOT = Path(__file__).resolve().parent.parent


def script(name: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "scripts" / f"{name}.py"), *args], capture_output=True,
                          text=True, timeout=300)


def test_filter_drops_weak_rows_with_reasons_and_copies_test(tmp_path, data_dir):
    rows = [make_row(i) for i in range(12)]
    rows[3]["Cover Letter"] = "Too short to be a letter, and it names no company."
    write_csv(data_dir / "train.csv", rows)
    # the fixture's letters are ~200 characters, so the length floor comes down to 100 here
    done = script("filter", str(data_dir), str(tmp_path / "out"), "--min-chars", "100")
    assert done.returncode == 0, done.stderr
    assert "train: 12 rows, 1 dropped" in done.stdout
    kept = pd.read_csv(tmp_path / "out" / "train.csv")
    dropped = pd.read_csv(tmp_path / "out" / "train.dropped.csv")
    assert len(kept) == 11 and dropped["row_id"].tolist() == [3]
    assert set(dropped["reasons"].item().split(";")) == {"too_short", "company_missing", "title_missing"}
    assert (tmp_path / "out" / "test.csv").read_bytes() == (data_dir / "test.csv").read_bytes()


def test_filter_rejects_an_unknown_rule(tmp_path, data_dir):
    done = script("filter", str(data_dir), str(tmp_path / "out"), "--rules", "too_shrt")
    assert done.returncode == 2 and "unknown rule too_shrt" in done.stderr and "Traceback" not in done.stderr


def test_compute_reports_leakage(tmp_path, data_dir):
    rows = [make_row(100 + i) for i in range(4)]
    write_csv(data_dir / "train.csv", [make_row(i) for i in range(8)] + rows[:1])  # one test row leaks
    done = script("compute", str(data_dir), "--json", str(tmp_path / "stats.json"))
    assert done.returncode == 0, done.stderr
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert stats["leakage"]["leaked"] == 1 and stats["leakage"]["leak_free_test_rows"] == 3
    assert stats["train"]["rows"] == 9 and stats["train"]["company_named_rate"] == 1.0


def test_clean_strips_artifacts(tmp_path):
    rows = [make_row(0), make_row(1)]
    rows[1]["Cover Letter"] = "### Cover Letter:\nDear  team,\n\n\nI apply.\n### Sample 2\nanother"
    done = script("clean", str(write_csv(tmp_path / "in.csv", rows)), str(tmp_path / "out.csv"))
    assert done.returncode == 0 and "1 letters changed" in done.stdout
    assert pd.read_csv(tmp_path / "out.csv")["Cover Letter"][1] == "Dear team,\n\nI apply."


def test_seeds_table_gives_mean_and_spread_with_the_best_validation_loss(tmp_path):
    variants = []
    for name, rouges, losses in (("a", (0.40, 0.42), (0.90, 0.80)), ("b", (0.50, 0.50), (0.70, 0.71))):
        runs = []
        for seed, (rouge, loss) in enumerate(zip(rouges, losses)):
            run = tmp_path / f"{name}-{seed}"
            run.mkdir()
            pd.DataFrame([{"subset": "all", "system": "finetuned", "metric": "rouge_l", "n": 3, "mean": rouge},
                          {"subset": "all", "system": "reference", "metric": "letter_words", "n": 3, "mean": 120.0}]
                         ).to_csv(run / "eval_summary.csv", index=False)
            (run / "train_log.jsonl").write_text(json.dumps({"eval_loss": loss + 0.1}) + "\n"
                                                 + json.dumps({"eval_loss": loss}) + "\n")
            runs.append(str(run))
        variants.append(f"{name}=" + ",".join(runs))
    done = script("seeds", *variants)
    assert done.returncode == 0, done.stderr
    lines = {line.split(" | ")[0]: line for line in done.stdout.splitlines() if line.startswith("| ")}
    assert lines["| fine-tuned, a (2 seeds)"].startswith("| fine-tuned, a (2 seeds) | 0.8500 ± 0.0707 | 0.410 ± 0.014 |")
    assert lines["| fine-tuned, b (2 seeds)"].startswith("| fine-tuned, b (2 seeds) | 0.7050 ± 0.0071 | 0.500 ± 0.000 |")
    assert lines["| reference letters"].startswith("| reference letters | – | – |")
    done = script("seeds", "--grounding", variants[0])
    assert done.returncode == 0, done.stderr
    assert "| system | best val loss | any unbacked claim | specific unbacked claim |" in done.stdout


def test_a_blind_reading_task_round_trips_to_a_reading_file(tmp_path, data_dir):
    """reading_tasks.py: model letters keyed by their dataset row, a task that names no system, and the
    reader's labels back into the readings' columns (a bad label is one line, exit 2)."""
    rows = [make_row(i) for i in range(3)]
    write_csv(data_dir / "train.csv", rows)
    table = pd.DataFrame([{COLUMNS[c]: v for c, v in r.items() if COLUMNS[c] != "cover_letter"}
                          | {"finetuned_output": f"I am writing. I use Python {i}."} for i, r in enumerate(rows)])
    table.to_csv(tmp_path / "eval.csv", index=False)
    letters = tmp_path / "model_letters.jsonl"
    store = ("--model-letters", str(letters))
    done = script("reading_tasks", "letters", str(tmp_path / "eval.csv"), "--data", str(data_dir),
                  "--split", "train", "--column", "finetuned_output", "--source", "greedy", *store)
    assert done.returncode == 0, done.stderr
    assert [json.loads(x)["row"] for x in letters.read_text().splitlines()] == [0, 1, 2]
    done = script("reading_tasks", "task", "--data", str(data_dir), "--letters", "greedy:train:2,reference:train:0",
                  "--out", str(tmp_path / "task.txt"), "--key", str(tmp_path / "key.json"), *store)
    assert done.returncode == 0, done.stderr
    task = (tmp_path / "task.txt").read_text()
    assert "greedy" not in task and "reference" not in task and task.count("#### L") == 2
    key = json.loads((tmp_path / "key.json").read_text())
    greedy_id = next(k for k, v in key.items() if v == ["greedy", "train", 2])
    sha = task.split(f"#### {greedy_id}")[1].split("[1] (sha ")[1][:8]
    (tmp_path / "labels.csv").write_text(f"letter,sentence,sha,label,severity\n{greedy_id},1,{sha},supported,\n")
    done = script("reading_tasks", "collect", str(tmp_path / "labels.csv"), "--key", str(tmp_path / "key.json"),
                  "--out", str(tmp_path / "reading.csv"))
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "reading.csv").read_text().splitlines()[1] == f"greedy,train,2,1,{sha},supported,"
    (tmp_path / "labels.csv").write_text(f"letter,sentence,sha,label,severity\n{greedy_id},1,{sha},true,\n")
    done = script("reading_tasks", "collect", str(tmp_path / "labels.csv"), "--key", str(tmp_path / "key.json"),
                  "--out", str(tmp_path / "bad.csv"))
    assert done.returncode == 2 and "line 2: label 'true'" in done.stderr and not (tmp_path / "bad.csv").exists()


def test_a_blind_reading_splits_fresh_novel_rows_over_readers(tmp_path, data_dir):
    """reading_tasks.py blind: only novel rows no reading holds, each reader gets every row once, and each row's
    letters of the three systems go to three different readers."""
    rows = [make_row(i) for i in range(6)]
    write_csv(data_dir / "test.csv", rows)
    letters = tmp_path / "model_letters.jsonl"
    letters.write_text("".join(json.dumps({"source": s, "split": "test", "row": r, "letter": f"I am {s} {r}."}) + "\n"
                               for s in ("a", "b", "c") for r in range(6)))
    pd.DataFrame({"row_id": range(6), "novel": [True, True, True, True, False, True]}).to_csv(tmp_path / "seen.csv")
    readings = tmp_path / "readings"
    readings.mkdir()
    (readings / "old.csv").write_text("source,split,row,sentence,sha,label,severity\na,test,5,0,00000000,supported,\n")
    done = script("reading_tasks", "blind", "--data", str(data_dir), "--seen", str(tmp_path / "seen.csv"),
                  "--sources", "a,b,c", "--rows", "3", "--seed", "1", "--out-dir", str(tmp_path / "blind"),
                  "--readings", str(readings), "--model-letters", str(letters))
    assert done.returncode == 0, done.stderr
    keys = [json.loads((tmp_path / "blind" / f".key_{k}.json").read_text()) for k in (1, 2, 3)]
    picked = {row for key in keys for _, _, row in key.values()}
    assert len(picked) == 3 and picked <= {0, 1, 2, 3}  # novel and never read (4 is not novel, 5 was read)
    for key in keys:
        assert sorted(row for _, _, row in key.values()) == sorted(picked)  # each reader: every row once
    for row in picked:
        assert sorted(s for key in keys for s, _, r in key.values() if r == row) == ["a", "b", "c"]
    assert "I am a" in (tmp_path / "blind" / "task_1.txt").read_text() and "a:" not in done.stdout


def test_tune_dpo_keeps_the_setting_that_flags_less_without_saying_less(tmp_path):
    """scripts/tune_dpo.py: per setting the mean over its seeds' validation letters, and the chosen setting is the
    one with fewer flagged letters that keeps supported claims and words; the terse setting, which flags nothing,
    fails that guard."""
    from flagged_row import INVENTED, LETTER, ROW

    clean = LETTER.replace(INVENTED + " ", "I have 3 years as a Data Analyst at Bar Inc, writing SQL reports. ")
    terse = "Dear Hiring Manager,\n\nI am applying for the Data Analyst role at Acme Corp.\n\nSincerely,\nAna Silva"
    settings = {"sft": [LETTER, clean], "calm": [clean, clean], "terse": [terse, terse]}
    args = []
    for name, letters in settings.items():
        runs = []
        for seed in (1, 2):
            run = tmp_path / f"{name}-{seed}"
            run.mkdir()
            rows = [{**ROW, "reference": clean, "finetuned_output": letter} for letter in letters]
            pd.DataFrame(rows).to_csv(run / "eval_validation.csv", index=False)
            (run / "test_validation_config.yaml").write_text("test:\n  decoding: greedy\n", encoding="utf-8")
            runs.append(str(run))
        args.append(f"{name}={','.join(runs)}")
    done = script("tune_dpo", *args, "--out", str(tmp_path / "t.md"))
    assert done.returncode == 0, done.stderr
    table = (tmp_path / "t.md").read_text()
    assert "| sft | 2 | 0.500 ± 0.000 |" in table and "| calm | 2 | 0.000 ± 0.000 |" in table
    assert done.stdout.strip().splitlines()[-1] == "chosen: calm"
    for wrong, said in ((["sft=" + args[0].split("=")[1]], "give the SFT runs"), ([args[0], "calm"], "NAME=RUN")):
        bad = script("tune_dpo", *wrong)
        assert bad.returncode == 2 and said in bad.stderr and "Traceback" not in bad.stderr


def test_score_letters_rescores_stored_letters_on_their_rows(tmp_path, data_dir):
    """score_letters.py: each source's stored letters judged against their own rows by the chosen checker, with
    supported claims and words beside the flags; a source the store lacks is one line, exit 2, nothing written."""
    rows = [make_row(100 + i) for i in range(4)]
    invented = "I led the COBOL migration at NASA for 12 years, managing a team of 40 engineers."
    letters = tmp_path / "model_letters.jsonl"
    letters.write_text("".join(
        json.dumps({"source": s, "split": "test", "row": r, "letter": text}) + "\n" for r, row in enumerate(rows)
        for s, text in (("invents", invented), ("quiet", f"Dear Hiring Manager,\nSincerely,\n{row['Applicant Name']}"))))
    out = tmp_path / "table.md"
    done = script("score_letters", "--data", str(data_dir), "--sources", "invents,quiet", "--claims", "lexical",
                  "--model-letters", str(letters), "--out", str(out))
    assert done.returncode == 0, done.stderr
    table = {line.split(" | ")[0].strip("| "): line.split(" | ")[1:] for line in out.read_text().splitlines()
             if line.startswith("| invents") or line.startswith("| quiet")}
    assert table["invents"][:2] == ["4", "1.000"] and table["quiet"][:2] == ["4", "0.000"]
    assert table["quiet"][4] == "0.00" and int(table["invents"][5].rstrip(" |")) == len(invented.split())
    done = script("score_letters", "--data", str(data_dir), "--sources", "nobody", "--claims", "lexical",
                  "--model-letters", str(letters), "--out", str(tmp_path / "none.md"))
    assert done.returncode == 2 and "nobody" in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "none.md").exists()
    # the dataset's own letters and metrics.py's baselines, made from the data on the same rows
    done = script("score_letters", "--data", str(data_dir), "--sources", "invents,reference,template,retrieval",
                  "--claims", "lexical", "--model-letters", str(letters), "--out", str(out))
    assert done.returncode == 0, done.stderr
    table = {line.split(" | ")[0].strip("| "): line.split(" | ")[1:] for line in out.read_text().splitlines()
             if line.startswith("| ") and not line.startswith("| source")}
    from coverlora.metrics.baselines import template_letter

    template_words = [len(template_letter(row | {"job_title": row["Job Title"], "hiring_company": row["Hiring Company"],
                                                 "applicant_name": row["Applicant Name"]}).split()) for row in rows]
    assert [table[s][0] for s in ("invents", "reference", "template", "retrieval")] == ["4"] * 4
    assert int(table["template"][5]) == round(sum(template_words) / 4)
    assert int(table["reference"][5]) == round(sum(len(row["Cover Letter"].split()) for row in rows) / 4)
    assert table["reference"][1] == "0.000"  # the fixture's rows back their own letters
    done = script("score_letters", "--data", str(data_dir), "--sources", "retrieval", "--split", "train",
                  "--claims", "lexical", "--model-letters", str(letters))
    assert done.returncode == 2 and "retrieval" in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_verifier_errors_names_the_rule_or_the_reader_that_flagged(monkeypatch):
    """verifier_errors.py: a flag an exact rule decided is named by its rule; the held-out part is not offered."""
    monkeypatch.syspath_prepend(str(ROOT / "scripts"))
    from verifier_errors import decided_by

    from coverlora.scoring.claims.verdicts import check_claims

    row = {"job_title": "Backend Engineer", "hiring_company": "Northwind", "current_experience": "Developer at Cobalt for 2 years",
           "skillsets": "Python", "qualifications": "BSc", "preferred_qualifications": "", "past_experience": ""}
    years = check_claims("I have 9 years of experience with Python.", row, method="verifier")[0]
    assert years.flagged and decided_by(years) == "rule:years"
    plain = check_claims("I am proficient in Python.", row, method="verifier")[0]
    assert decided_by(plain) == "reader"
    done = script("verifier_errors", "--data", "nowhere", "--part", "heldout")
    assert done.returncode == 2 and "heldout" in done.stderr and "Traceback" not in done.stderr
