"""The node's gRPC faces: servicers, who may call what, records as callers see them."""
