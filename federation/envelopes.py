"""DSSE envelopes between their wire form (`certfed.v1.DsseEnvelope`) and `signing.dsse.Envelope`.

Promises: the payload bytes, payload type and signatures pass through unchanged in both
directions, never re-serialised, so a signature verifies over exactly the bytes that were sent.
"""

from __future__ import annotations

from certfed.v1 import common_pb2
from signing import dsse


def envelope_to_proto(envelope: dsse.Envelope) -> common_pb2.DsseEnvelope:
    return common_pb2.DsseEnvelope(
        payload=envelope.payload,
        payload_type=envelope.payload_type,
        signatures=[
            common_pb2.DsseSignature(keyid=signature.keyid, sig=signature.sig)
            for signature in envelope.signatures
        ],
    )


def envelope_from_proto(message: common_pb2.DsseEnvelope) -> dsse.Envelope:
    return dsse.Envelope(
        payload=bytes(message.payload),
        payload_type=message.payload_type,
        signatures=tuple(
            dsse.Signature(keyid=signature.keyid, sig=bytes(signature.sig))
            for signature in message.signatures
        ),
    )
