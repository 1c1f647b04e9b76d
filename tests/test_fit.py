"""Before loading (visit/models/fit.py, visit/ui/model_fit.py): the estimate says whether a model fits, in the
CLI and in the app's model box, from its config alone."""

import functools

import pytest

from conftest import build_tiny
from visit.cli import main
from visit.models import load_model, memory
from visit.models.fit import check_fit
from visit.models.loading import dims_of
from visit.ui.model_fit import fit_message
from visit.ui.model_registry import ModelRegistry
from visit.ui.policy import ModelPolicy


@pytest.fixture(scope="module")
def saved(tokenizer, tmp_path_factory):
    directory = tmp_path_factory.mktemp("tiny-fit")
    vm = build_tiny("llama", tokenizer)
    vm.model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return str(directory), vm


def test_a_model_that_fits_says_how_much_it_needs(saved):
    directory, vm = saved
    fit = check_fit(directory, device="cpu", tokens=64)
    n = sum(p.numel() for p in vm.model.parameters())
    assert fit.fits is True and f"{n / 1e6:.1f}M parameters" in fit.text and "fits on cpu" in fit.text
    est = memory.estimate(memory.empty_model(vm.model.config, vm.model.dtype), dims_of(vm.model), vm.model.dtype, 64)
    assert est.describe() in fit.text  # the same estimate load_model checks


def test_a_model_that_does_not_fit_says_so_before_loading(saved):
    directory, _ = saved
    fit = check_fit(directory, device="cpu", max_memory="cpu=1MiB")
    assert fit.fits is False and "will not fit" in fit.text


def test_unknown_models_cannot_be_told_without_error():
    fit = check_fit("nobody-has/this-model-xyz", download=False)
    assert fit.fits is None and "not known before loading" in fit.text


def test_the_model_box_says_it_before_loading_and_respects_the_policy(saved):
    directory, vm = saved
    registry = ModelRegistry(preloaded=vm, default_name="default")
    text = str(fit_message(registry, directory))
    assert "before loading" in text and "fits on" in text
    registry.loader = functools.partial(load_model, max_memory="cpu=1MiB")  # app.py's loader with a placement
    assert "will not fit" in str(fit_message(registry, directory))
    registry.policy = ModelPolicy.restricted()  # a shared server that loads only its default model
    refused = str(fit_message(registry, directory))
    assert "fits" not in refused and "parameters" not in refused


def test_the_cli_says_it_before_loading(saved, tmp_path, capsys):
    directory, _ = saved
    assert main(["trace", "The capital of France is", "--model", directory, "--json", str(tmp_path / "t.json")]) == 0
    err = capsys.readouterr().err
    assert f"visit: before loading: {directory}: " in err and "fits on" in err
    assert main(["trace", "hello", "--model", directory, "--max-memory", "cpu=1MiB"]) == 2
    err = capsys.readouterr().err
    assert "will not fit" in err and "before loading" not in err  # one line: load_model's refusal
