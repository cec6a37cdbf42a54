from steps.tokenize.cli import app

app()
