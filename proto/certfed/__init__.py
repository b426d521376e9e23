"""Generated protobuf code for the certfed wire contract (package certfed.v1)."""
