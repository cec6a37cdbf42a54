"""The registered artifact's model directory is found whatever the logged folder was called."""

from shared.mlflow_utils import connect
from shared.model_package import load_model_dir, log_model, model_dir_from_mlflow
from shared.settings import Settings


def test_model_dir_is_found_from_the_mlmodel_file(constant_model_dirs, tmp_path):
    import mlflow

    connect(Settings(mlflow_tracking_uri=f"sqlite:///{tmp_path}/m.db", mlflow_experiment_name="download"))
    with mlflow.start_run():
        info = log_model(constant_model_dirs["joy"])  # a folder named always-joy*, not model_dir
    local = mlflow.artifacts.download_artifacts(info.model_uri, dst_path=str(tmp_path / "dl"))
    model_dir = model_dir_from_mlflow(local)
    assert model_dir.name.startswith("always-joy")
    _, _, labels = load_model_dir(model_dir)
    assert labels[1] == "joy"
