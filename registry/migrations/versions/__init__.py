"""Registry schema revisions, oldest first; each is written by hand with `op` calls."""
