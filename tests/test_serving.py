

def test_debug_keeps_the_development_server_on_loopback_only(monkeypatch, capsys, tokenizer):
    import importlib.util

    import dash

    import visit.models

    spec = importlib.util.spec_from_file_location("visit_app_main", ROOT / "app.py")
    app_main = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(app_main)
    served = {}
    monkeypatch.setattr(visit.models, "load_model", lambda name, **kw: build_tiny("gpt2", tokenizer))
    monkeypatch.setattr(dash.Dash, "run", lambda self, **kw: served.update(app=self, **kw))
    assert app_main.main(["--debug", "--port", "8124"]) == 0
    assert served["debug"] is True and served["port"] == 8124  # Flask's development server, not gunicorn
    assert app_main.main(["--debug", "--host", "0.0.0.0"]) == 2
    assert "only on a loopback address" in capsys.readouterr().err
