"""The node's store: tables, migrations, one module per aggregate; nothing else writes SQL."""
