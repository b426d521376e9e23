"""The transparency log in use: checkpoints, serving, sync, bundles, verifying attestations."""
