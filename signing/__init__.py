"""certfed's pure signing library: keys, DSSE envelopes, HPKE sealing, identity numbers, locators.

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
- `signing.errors`: the exception family.
"""

__all__ = ["dsse", "errors", "identity", "keys", "locator", "sealing"]
