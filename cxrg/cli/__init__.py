"""The `cxrg` command line: one thin module per subcommand; heavy imports happen inside the commands."""
