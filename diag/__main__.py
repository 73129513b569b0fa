from diag.cli import run

run()
