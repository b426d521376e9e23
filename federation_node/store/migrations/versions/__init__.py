"""Node store schema versions, oldest first."""
