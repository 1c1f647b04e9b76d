"""Batch and sequential CounterFact evaluation on tiny models: what each mode edits and scores, the health curve,
the weights bit-identical afterwards (also after an exception in the middle of a run), and the CLI
(``visit edit-eval --mode``, ``visit edit --batch``) with its one-line errors."""

import json

import pytest
import torch

from visit.cli import main
from visit.editing import EditStack
from visit.editing import modes as modes_module
from visit.editing.counterfact import Record, record_metrics, record_scores, summarise
from visit.editing.memit import MemitConfig
from visit.editing.modes import apply_batch, evaluate_mode
from visit.editing.stats import key_stats

SMALL = MemitConfig(prefixes=((5, 2),), steps=3)
CORPUS = ("The capital of France is Paris. Rome is in Italy, and the Eiffel Tower is in Paris. "
          "Messi plays football; Danielle Darrieux spoke French. ") * 40


def record(i, prompt, subject, new, old, para, neigh):
    return {"case_id": i, "requested_rewrite": {"prompt": prompt, "subject": subject, "target_new": {"str": new},
                                                "target_true": {"str": old}},
            "paraphrase_prompts": [para], "neighborhood_prompts": [neigh]}


RAW = [record(0, "The capital of {} is", "France", "Rome", "Paris", "France's capital city is",
              "The capital of Germany is"),
       record(1, "{} plays the sport of", "Messi", "tennis", "football", "Messi is a professional",
              "Ronaldo plays the sport of"),
       record(2, "The mother tongue of {} is", "Danielle Darrieux", "English", "French",
              "Danielle Darrieux spoke", "The mother tongue of Jean Gabin is")]
RECORDS = [Record.from_json(r, str(i)) for i, r in enumerate(RAW)]


@pytest.fixture(scope="module")
def vm_and_stats(tiny_factory, tmp_path_factory):
    vm = tiny_factory("llama", seed=5)
    path = tmp_path_factory.mktemp("corpus") / "corpus.txt"
    path.write_text(CORPUS, encoding="utf-8")
    return vm, {lay: key_stats(vm, lay, corpus=str(path), tokens=600, use_cache=False) for lay in (0, 1)}


def params(vm):
    return {n: p.detach().clone() for n, p in vm.model.named_parameters()}


def same(vm, saved):
    return all(torch.equal(saved[n], p) for n, p in vm.model.named_parameters())


@pytest.mark.parametrize("method", ["memit", "alphaedit"])
def test_sequential_mode_scores_the_records_edited_so_far_on_the_stacked_model(vm_and_stats, method):
    vm, stats = vm_and_stats
    original = params(vm)
    result = evaluate_mode(vm, RECORDS, method, "sequential", every=2, layers=(0, 1), config=SMALL, stats=stats)
    assert same(vm, original)
    assert [p["edits"] for p in result.curve] == [2, 3] and result.every == 2
    assert result.curve[-1]["ES"] == result.metrics["ES"] and result.curve[-1]["GE"] is None
    # the same edits, redone by hand: the first point is the first two records scored after two edits
    stack = EditStack()
    for r in RECORDS[:2]:
        stack.edit(vm, r.request, method, layers=(0, 1), config=SMALL, stats=stats)
    with stack.applied(vm):
        metrics, _ = summarise([record_metrics(record_scores(vm, r)) for r in RECORDS[:2]])
    for m in ("ES", "PS", "NS"):
        assert result.curve[0][m] == pytest.approx(metrics[m])
    assert result.to_json()["mode"] == "sequential" and len(result.to_json()["records"]) == 3


def test_batch_mode_writes_all_records_in_one_memit_edit(vm_and_stats):
    vm, stats = vm_and_stats
    stack = EditStack()
    [edit] = apply_batch(vm, stack, [r.request for r in RECORDS], "memit", layers=(0, 1), config=SMALL, stats=stats)
    assert len(edit.all_requests) == 3
    result = evaluate_mode(vm, RECORDS, "memit", "batch", layers=(0, 1), config=SMALL, stats=stats)
    assert len(result.curve) == 1 and result.curve[0]["edits"] == 3
    with stack.applied(vm):
        metrics, _ = summarise([record_metrics(record_scores(vm, r)) for r in RECORDS])
    assert result.metrics["ES"] == pytest.approx(metrics["ES"]) and result.metrics["NS"] == pytest.approx(
        metrics["NS"])


@pytest.mark.parametrize("mode, fail_at", [("batch", 4), ("sequential", 5)])
def test_an_exception_in_the_middle_of_a_run_leaves_the_weights_bit_identical(vm_and_stats, monkeypatch, mode,
                                                                               fail_at):
    """Scoring raises while the edits are applied (after the unedited scores: the 4th/5th call)."""
    vm, stats = vm_and_stats
    original = params(vm)
    calls = []
    real = modes_module.record_scores

    def failing(vm_, rec):
        calls.append(rec.case_id)
        if len(calls) == fail_at:
            raise RuntimeError("boom")
        return real(vm_, rec)

    monkeypatch.setattr(modes_module, "record_scores", failing)
    with pytest.raises(RuntimeError, match="boom"):
        evaluate_mode(vm, RECORDS, "memit", mode, every=1, layers=(0, 1), config=SMALL, stats=stats)
    assert len(calls) == fail_at and same(vm, original)


def test_an_exception_while_editing_in_sequence_leaves_the_weights_bit_identical(vm_and_stats, monkeypatch):
    vm, stats = vm_and_stats
    original = params(vm)
    from visit.editing import memit

    real, calls = memit._optimise_targets, []

    def failing(*args):
        calls.append(1)
        if len(calls) == 2:  # the second edit, computed with the first one applied
            raise RuntimeError("boom")
        return real(*args)

    monkeypatch.setattr(memit, "_optimise_targets", failing)
    with pytest.raises(RuntimeError, match="boom"):
        evaluate_mode(vm, RECORDS, "alphaedit", "sequential", layers=(0, 1), config=SMALL, stats=stats)
    assert same(vm, original)


@pytest.fixture(scope="module")
def model_dir(tiny_factory, tmp_path_factory):
    vm = tiny_factory("llama", seed=5)
    path = tmp_path_factory.mktemp("tiny-model")
    vm.model.save_pretrained(path)
    vm.tokenizer.save_pretrained(path)
    return str(path)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """A private cache shared by the CLI tests (the key statistics are sampled once), with short sampled rows."""
    from visit.editing import stats

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VISIT_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
        mp.setattr(stats, "ROW_TOKENS", 24)
        yield


@pytest.fixture
def files(tmp_path, cache):
    """The records file (and the private cache)."""
    records = tmp_path / "records.jsonl"
    records.write_text("\n".join(json.dumps(r) for r in RAW), encoding="utf-8")
    return tmp_path, str(records)


def test_cli_sequential_run_writes_the_health_curve(model_dir, files, capsys):
    tmp, records = files
    out_json, out_html = tmp / "run.json", tmp / "run.html"
    rc = main(["edit-eval", "--records", records, "--method", "memit", "--layers", "0-1", "--mode", "sequential",
               "--every", "1", "--json", str(out_json), "--html", str(out_html), "--model", model_dir,
               "--device", "cpu"])
    assert rc == 0
    data = json.loads(out_json.read_text(encoding="utf-8"))
    assert data["mode"] == "sequential" and [p["edits"] for p in data["curve"]] == [1, 2, 3]
    assert data["curve"][-1]["NS"] == data["metrics"]["NS"]
    page = out_html.read_text(encoding="utf-8")
    assert "Health curve" in page and "plotly" in page and "Danielle Darrieux" in page
    assert "health curve" in capsys.readouterr().out


def test_cli_batch_edit_of_a_file(model_dir, files, capsys):
    tmp, records = files
    rc = main(["edit", "--batch", records, "--method", "alphaedit", "--layers", "1", "--json", str(tmp / "e.json"),
               "--model", model_dir, "--device", "cpu"])
    assert rc == 0
    data = json.loads((tmp / "e.json").read_text(encoding="utf-8"))
    assert len(data["edits"]) == 1 and len(data["edits"][0]["requests"]) == 3 and len(data["facts"]) == 3
    assert "3 requests, at once: 1 edit(s)" in capsys.readouterr().out


@pytest.mark.parametrize("bad, message", [
    ('{"requested_rewrite": {"prompt": "The capital of {} is", "subject": "France", "target_new": "Rome", '
     '"target_true": {"str": "Paris"}}}', "records.jsonl[1]: not in CounterFact's format"),
    ('{"requested_rewrite": {"prompt": "The capital of {} is", "subject": "France"}}', "missing 'target_new'"),
    ('{"requested_rewrite": {"prompt": "The capital of is", "subject": "France", "target_new": {"str": "Rome"}, '
     '"target_true": {"str": "Paris"}}}', "exactly one {}"),
    ("{not json", "cannot read records"),
])
@pytest.mark.parametrize("command", ["edit", "edit-eval"])
def test_a_malformed_record_is_one_line_and_exit_2(files, capsys, bad, message, command):
    tmp, _ = files
    path = tmp / "records.jsonl"
    path.write_text(json.dumps(RAW[0]) + "\n" + bad + "\n", encoding="utf-8")
    argv = ["edit", "--batch", str(path)] if command == "edit" else ["edit-eval", "--records", str(path),
                                                                     "--mode", "batch"]
    assert main(argv + ["--method", "memit"]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


@pytest.mark.parametrize("argv, message", [
    (["edit-eval", "--mode", "batch", "--every", "2"], "--every is for --mode sequential"),
    (["edit-eval", "--mode", "sequential", "--every", "0"], "at least 1"),
    (["edit-eval", "--method", "rome", "--layers", "1-3"], "--layers is for memit and alphaedit"),
    (["edit", "The capital of {} is", "--subject", "France", "--new", "Rome", "--sequential"], "for --batch"),
])
def test_bad_options_are_one_line_and_exit_2(capsys, argv, message):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
