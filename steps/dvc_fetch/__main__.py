from steps.dvc_fetch.cli import app

app()
