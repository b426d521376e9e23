"""A node's offices, composed once: what the servicers and the server hold.

`Node` only gathers the role objects around their shared `NodeContext`; every operation is a
method of one role (paying_office.py, residence_agency.py, certifying.py, evidence.py, issuing.py,
lifecycle.py, data_signals.py, daily_cycle.py, administration.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy.engine import Engine

from federation_node.config import NodeConfig
from federation_node.keystore import NodeKeys
from federation_node.links.directory_client import DirectoryClient
from federation_node.locators import Locators
from federation_node.offices.administration import Administration
from federation_node.offices.certification_status import CertificationStatuses
from federation_node.offices.certifying import Certifier
from federation_node.offices.context import NodeContext
from federation_node.offices.daily_cycle import DailyCycle
from federation_node.offices.data_signals import DataSignals
from federation_node.offices.death_reports import DeathReports
from federation_node.offices.employer_batch import EmployerBatches
from federation_node.offices.evidence import EvidenceArchive
from federation_node.offices.face_recognition import FaceRecognitions
from federation_node.offices.issuing import Issuer
from federation_node.offices.life_events import LifeEvents
from federation_node.offices.lifecycle import Lifecycle
from federation_node.offices.monthly_amounts import MonthlyAmounts
from federation_node.offices.operator_accounts import OperatorAccounts
from federation_node.offices.outbound_requests import OutboundRequests
from federation_node.offices.paying_office import PayingOffice
from federation_node.offices.recovery import Recoveries
from federation_node.offices.registration import Registration
from federation_node.offices.residence_agency import ResidenceAgency
from federation_node.offices.roll import Roll
from federation_node.offices.sign_in import SignIn
from federation_node.rules.policy import Policy


@dataclass(frozen=True)
class Node:
    context: NodeContext
    paying_office: PayingOffice
    outbound_requests: OutboundRequests
    registration: Registration
    roll: Roll
    monthly_amounts: MonthlyAmounts
    residence_agency: ResidenceAgency
    certifier: Certifier
    evidence: EvidenceArchive
    issuer: Issuer
    data_signals: DataSignals
    lifecycle: Lifecycle
    daily_cycle: DailyCycle
    administration: Administration
    sign_in: SignIn
    operator_accounts: OperatorAccounts
    face_recognitions: FaceRecognitions
    employer_batches: EmployerBatches
    certification_statuses: CertificationStatuses
    recoveries: Recoveries
    death_reports: DeathReports


def compose_node(
    config: NodeConfig,
    keys: NodeKeys,
    engine: Engine,
    directory: DirectoryClient,
    policy: Policy,
    locate: Callable[[bytes], list[str]],
    *,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    locators: Locators | None = None,
) -> Node:
    """The node's offices over one context; `locate` finds who pays a walk-in and `locators`
    computes subject locators (both the registry's; without `locators`, none can be computed)."""
    context = NodeContext(config, keys, engine, directory, policy, clock=clock, locators=locators)
    issuer = Issuer(context)
    paying_office = PayingOffice(context)
    outbound_requests = OutboundRequests(context)
    residence_agency = ResidenceAgency(context, locate)
    evidence = EvidenceArchive(context)
    life_events = LifeEvents(context, locate)
    return Node(
        context=context,
        paying_office=paying_office,
        outbound_requests=outbound_requests,
        registration=Registration(context),
        roll=Roll(context),
        monthly_amounts=MonthlyAmounts(context),
        residence_agency=residence_agency,
        certifier=Certifier(
            context, issuer, residence_agency, paying_office, evidence, life_events
        ),
        evidence=evidence,
        issuer=issuer,
        data_signals=DataSignals(context, issuer, paying_office),
        lifecycle=Lifecycle(context, issuer, life_events),
        daily_cycle=DailyCycle(context, outbound_requests, evidence),
        administration=Administration(context),
        sign_in=SignIn(context),
        operator_accounts=OperatorAccounts(context),
        face_recognitions=FaceRecognitions(context, issuer, paying_office),
        employer_batches=EmployerBatches(context, issuer, paying_office),
        certification_statuses=CertificationStatuses(context),
        recoveries=Recoveries(context),
        death_reports=DeathReports(context),
    )
