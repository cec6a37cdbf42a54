from steps.deploy.cli import app

app()
