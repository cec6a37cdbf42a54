from steps.hpo.cli import app

app()
