"""The certfed federation node: its gRPC servers, its store, its outbox dispatcher and its policy.

The store is one module per aggregate (`beneficiaries`, `assistance`, `certifications`,
`attestations_store`, `outbox`, `operators`, `audit`) over the tables of `models`; `db` opens the
database, runs the migrations and hands out one transaction per domain operation.
"""
