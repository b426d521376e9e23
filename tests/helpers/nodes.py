"""The offices the integration, fault and security tests start, one definition each.

A test that needs an office in a role of its own still writes its NodeSpec; these are the ones
several files share. Import under the role a test gives them (`LANZHOU as PAYING`).
"""

from __future__ import annotations

from cli.launcher import NodeSpec

LANZHOU = NodeSpec("lanzhou", "Lanzhou office", ("620102",), ("paying_office",))
# Qingdao both certifies (residence agency) and pays; QINGDAO_AGENCY only certifies.
QINGDAO = NodeSpec("qingdao", "Qingdao centre", ("370200",), ("residence_agency", "paying_office"))
QINGDAO_AGENCY = NodeSpec("qingdao", "Qingdao centre", ("370200",), ("residence_agency",))
FOSHAN = NodeSpec("foshan", "Foshan office", ("440600",), ("paying_office",))
DATONG = NodeSpec("datong", "Datong centre", ("140200",), ("residence_agency",))
MACAU = NodeSpec("macau-desk", "Macau SSF desk", ("MO",), ("partner_liaison",))
