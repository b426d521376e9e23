"""A node's backups: a consistent snapshot of its database and its key files, encrypted under a
passphrase, and their restore (docs/operations.md, "Backup and restore")."""
