"""What the office does: paying office, residence agency, issuing, entitlement lifecycle."""
