from steps.register.cli import app

app(prog_name="python -m steps.register")
