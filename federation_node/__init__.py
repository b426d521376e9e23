"""The certfed federation node: its servers and background workers over the rooms below.

`store` (tables, migrations, one module per aggregate), `rules` (pure entitlement and policy
rules), `offices` (what the paying office and the residence agency do, and issuing), `service`
(the gRPC servicers and who may call what), `tlog` (the transparency log, sync and bundles) and
`links` (directory, peers, dispatcher, key rollover); `server` builds the process from them.
"""
