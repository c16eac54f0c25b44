"""Command-line interface: one thin Typer module per subcommand."""
