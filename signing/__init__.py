"""certfed's pure signing library: keys, DSSE, HPKE sealing, identities, locators, Merkle logs.

Everything here takes bytes, strings and keys and returns bytes or values, or raises an error
of the one `signing.errors.SigningError` family. It performs no network or database access and
no file I/O, apart from the explicit private key save/load functions in `signing.keys`, and it
imports nothing else of certfed's, so every other package can depend on it.

Import what you need from the submodules:

- `signing.keys`: Ed25519 signing keys, X25519 HPKE keys, key ids, private key files.
- `signing.dsse`: DSSE v1 envelopes for attestations, directories and enrolments.
- `signing.sealing`: HPKE (RFC 9180) sealing of personal data to one node and one context.
- `signing.identity`: validation, normalisation and masking of identity numbers.
- `signing.locator`: the keyed subject locator that replaces identity numbers in attestations.
- `signing.merkle`: RFC 9162 Merkle tree roots, inclusion and consistency proofs.
- `signing.note`: C2SP signed notes, checkpoints and witness cosignatures.
- `signing.errors`: the exception family.
"""

__all__ = ["dsse", "errors", "identity", "keys", "locator", "merkle", "note", "sealing"]
