"""The command line: the Typer app (``app.py``), its terminal tables, the process launcher and the demo."""
