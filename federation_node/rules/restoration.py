"""Restoring an entitlement that ended with imprisonment or a declaration of missing, when the
person is released or reappears: plain functions over plain data, no I/O.

Entitlement ends on imprisonment and on a declaration of missing as it does on death; unlike a
death, it comes back when the person does. From which month, and whether the months in between
are paid back, is the region's rule (`Policy`, section `[restoration]`):

* payment resumes `resume_after_months` after the month the person returned (0: that month),
  never in a closed month: a restoration recorded late resumes in the first open month, and the
  entitled months before it are paid back whatever the rule, since they were owed;
* with `back_pay`, every month from the one payment stopped in is paid back as well.

A death never comes back this way: a death recorded by mistake is corrected
(offices/corrections.py).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import date

from federation_node.rules.entitlement import add_months, month_start, months_from
from federation_node.rules.policy import Policy


class Return(enum.StrEnum):
    RELEASE = "release"
    REAPPEARANCE = "reappearance"


@dataclass(frozen=True)
class Restoration:
    effective_month: date
    back_pay_months: int
    back_pay_fen: int


def restoration(
    kind: Return,
    returned_on: date,
    stopped_from: date,
    monthly_amount_fen: int,
    policy: Policy,
    *,
    not_before: date | None = None,
) -> Restoration:
    """Payment for a person who returned on `returned_on`, whose payment stopped from the month
    `stopped_from`; `not_before` is the first month still open."""
    if kind is Return.RELEASE:
        after, back_pay = policy.release_resume_after_months, policy.release_back_pay
    else:
        after, back_pay = policy.reappearance_resume_after_months, policy.reappearance_back_pay
    stopped = month_start(stopped_from)
    entitled_from = max(add_months(month_start(returned_on), after), stopped)
    effective = entitled_from
    if not_before is not None:
        effective = max(effective, month_start(not_before))
    paid_back_from = stopped if back_pay else entitled_from
    months = max(0, months_from(paid_back_from, effective))
    return Restoration(effective, months, months * monthly_amount_fen)
