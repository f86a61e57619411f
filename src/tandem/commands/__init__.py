"""Typer sub-commands, one module per command group; ``tandem.cli`` registers them."""
