"""One module per `usage-etl` subcommand: each has `add_parser(subparsers)`."""
