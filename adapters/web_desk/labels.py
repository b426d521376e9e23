"""Words for the node's enum values and error families, marked for translation.

`N_` only marks a message id for extraction; the page translates it when it shows it.
"""

from __future__ import annotations

import grpc

from certfed.v1 import common_pb2, desk_pb2


def N_(message: str) -> str:  # noqa: N802 - the gettext convention for "mark, translate later"
    return message


OPERATOR_ROLES = {
    desk_pb2.OPERATOR_ROLE_CLERK: ("clerk", N_("Clerk")),
    desk_pb2.OPERATOR_ROLE_REVIEWER: ("reviewer", N_("Reviewer")),
    desk_pb2.OPERATOR_ROLE_ADMIN: ("admin", N_("Administrator")),
}
NODE_ROLES = {
    common_pb2.ROLE_PAYING_OFFICE: "paying_office",
    common_pb2.ROLE_RESIDENCE_AGENCY: "residence_agency",
    common_pb2.ROLE_PARTNER_LIAISON: "partner_liaison",
}
NODE_ROLE_NAMES = {
    common_pb2.ROLE_PAYING_OFFICE: N_("Paying office"),
    common_pb2.ROLE_RESIDENCE_AGENCY: N_("Residence agency"),
    common_pb2.ROLE_PARTNER_LIAISON: N_("Liaison desk"),
}
# A peer's standing in the federation; unspecified: the outbox holds messages for a destination
# the directory no longer lists (or the node has no directory in force).
NODE_STATUSES = {
    common_pb2.NODE_STATUS_UNSPECIFIED: N_("Not in the directory"),
    common_pb2.NODE_STATUS_PENDING: N_("Awaiting approval"),
    common_pb2.NODE_STATUS_ACTIVE: N_("Active"),
    common_pb2.NODE_STATUS_SUSPENDED: N_("Suspended"),
    common_pb2.NODE_STATUS_REVOKED: N_("Revoked"),
}
METHODS = {
    common_pb2.CERTIFICATION_METHOD_ON_SITE: N_("At the counter, in person"),
    common_pb2.CERTIFICATION_METHOD_HOME_VISIT: N_("Home visit"),
    common_pb2.CERTIFICATION_METHOD_VIDEO_CALL: N_("Video call"),
    common_pb2.CERTIFICATION_METHOD_FACE_RECOGNITION: N_("Face recognition"),
    common_pb2.CERTIFICATION_METHOD_RELATIVE_ASSISTED: N_("Assisted by a relative"),
    common_pb2.CERTIFICATION_METHOD_PARTNER_AGENCY: N_("Partner agency"),
    common_pb2.CERTIFICATION_METHOD_CONSULATE: N_("Consulate"),
    common_pb2.CERTIFICATION_METHOD_DATA_MATCH: N_("Data match"),
    common_pb2.CERTIFICATION_METHOD_EMPLOYER_BATCH: N_("Employer batch"),
}
# The methods a clerk records at the desk (the others come from feeds and partners).
DESK_METHODS = (
    common_pb2.CERTIFICATION_METHOD_ON_SITE,
    common_pb2.CERTIFICATION_METHOD_HOME_VISIT,
    common_pb2.CERTIFICATION_METHOD_VIDEO_CALL,
    common_pb2.CERTIFICATION_METHOD_RELATIVE_ASSISTED,
)
METHOD_NAMES = {
    "on_site": common_pb2.CERTIFICATION_METHOD_ON_SITE,
    "home_visit": common_pb2.CERTIFICATION_METHOD_HOME_VISIT,
    "video_call": common_pb2.CERTIFICATION_METHOD_VIDEO_CALL,
    "relative_assisted": common_pb2.CERTIFICATION_METHOD_RELATIVE_ASSISTED,
}
OUTCOMES = {
    common_pb2.CERTIFICATION_OUTCOME_ALIVE: N_("Alive"),
    common_pb2.CERTIFICATION_OUTCOME_DECEASED: N_("Deceased"),
    common_pb2.CERTIFICATION_OUTCOME_IMPRISONED: N_("Imprisoned"),
    common_pb2.CERTIFICATION_OUTCOME_DECLARED_MISSING: N_("Declared missing"),
}
ASSISTANCE_STATUSES = {
    common_pb2.ASSISTANCE_STATUS_QUEUED: N_("Waiting to be sent"),
    common_pb2.ASSISTANCE_STATUS_RECEIVED: N_("Received"),
    common_pb2.ASSISTANCE_STATUS_ACCEPTED: N_("Accepted"),
    common_pb2.ASSISTANCE_STATUS_SCHEDULED: N_("Scheduled"),
    common_pb2.ASSISTANCE_STATUS_DECLINED: N_("Declined"),
    common_pb2.ASSISTANCE_STATUS_COMPLETED: N_("Completed"),
}
ASSISTANCE_FILTERS = {
    "received": common_pb2.ASSISTANCE_STATUS_RECEIVED,
    "accepted": common_pb2.ASSISTANCE_STATUS_ACCEPTED,
    "scheduled": common_pb2.ASSISTANCE_STATUS_SCHEDULED,
    "declined": common_pb2.ASSISTANCE_STATUS_DECLINED,
    "completed": common_pb2.ASSISTANCE_STATUS_COMPLETED,
}
CERTIFICATION_STATUSES = {
    desk_pb2.CERTIFICATION_STATUS_AWAITING_REVIEW: N_("Awaiting review"),
    desk_pb2.CERTIFICATION_STATUS_APPROVED: N_("Approved"),
    desk_pb2.CERTIFICATION_STATUS_REJECTED: N_("Rejected"),
}
# Why a peer's attestation was kept for a reviewer instead of applied, and what was decided.
HOLD_REASONS = {
    desk_pb2.HOLD_REASON_WALK_IN_NOT_ALLOWED: N_(
        "It answers no request of this office, and its issuer may not certify a walk-in here"
    ),
    desk_pb2.HOLD_REASON_NEGATIVE_WITHOUT_REQUEST: N_(
        "It reports a death, imprisonment or disappearance nobody here asked its issuer about"
    ),
    desk_pb2.HOLD_REASON_NOT_OUR_REQUEST: N_(
        "It names a request this office never sent to its issuer about this person"
    ),
    desk_pb2.HOLD_REASON_CORRECTION: N_(
        "It corrects an earlier attestation of its issuer; only a reviewer here applies it"
    ),
    desk_pb2.HOLD_REASON_RESTORES_ENTITLEMENT: N_(
        "It shows alive a person whose entitlement ended with imprisonment or a declaration of "
        "missing"
    ),
}
HOLD_REASON_OTHER = N_("Kept for review")
HOLD_DECISIONS = {
    desk_pb2.HOLD_DECISION_PENDING: N_("Awaiting a decision"),
    desk_pb2.HOLD_DECISION_APPLIED: N_("Applied"),
    desk_pb2.HOLD_DECISION_DISMISSED: N_("Dismissed"),
}
# An employer's batch list (pages/employer_batches.py) and its review.
EMPLOYER_BATCH_STATES = {
    desk_pb2.EMPLOYER_BATCH_STATE_PENDING: N_("Awaiting a decision"),
    desk_pb2.EMPLOYER_BATCH_STATE_APPROVED: N_("Approved"),
    desk_pb2.EMPLOYER_BATCH_STATE_REJECTED: N_("Rejected"),
}
AMOUNT_CHANGE_STATES = {
    desk_pb2.AMOUNT_CHANGE_STATUS_PROPOSED: N_("Awaiting review"),
    desk_pb2.AMOUNT_CHANGE_STATUS_APPROVED: N_("Approved"),
    desk_pb2.AMOUNT_CHANGE_STATUS_REJECTED: N_("Rejected"),
    desk_pb2.AMOUNT_CHANGE_STATUS_SUPERSEDED: N_("Superseded by a later proposal"),
}
# Why a reviewer's bulk approval left a change for a decision on its own.
AMOUNT_CHANGE_LEFT_REASONS = {
    desk_pb2.AMOUNT_CHANGE_LEFT_REASON_NOT_AWAITING_REVIEW: N_("It no longer awaits review."),
    desk_pb2.AMOUNT_CHANGE_LEFT_REASON_OWN_PROPOSAL: N_(
        "You proposed it, so a different reviewer decides it."
    ),
    desk_pb2.AMOUNT_CHANGE_LEFT_REASON_OVER_BULK_BOUND: N_(
        "It moves the amount by more than the office's policy allows for changes approved "
        "together: decide it on its own."
    ),
}
# Who helped a person through face recognition ("certify for another"), by the relation names of
# the node's policy (federation_node/rules/policy.py HELPER_RELATIONS).
HELPER_RELATIONS = {
    "spouse": N_("Spouse"),
    "child": N_("Child"),
    "grandchild": N_("Grandchild"),
    "sibling": N_("Brother or sister"),
    "other_relative": N_("Another relative"),
    "guardian": N_("Guardian"),
}
BENEFICIARY_STATUSES = {
    desk_pb2.BENEFICIARY_STATUS_ACTIVE: N_("Active"),
    desk_pb2.BENEFICIARY_STATUS_DECEASED: N_("Deceased"),
    desk_pb2.BENEFICIARY_STATUS_IMPRISONED: N_("Imprisoned"),
    desk_pb2.BENEFICIARY_STATUS_DECLARED_MISSING: N_("Declared missing"),
}
ENTITLEMENT_STATES = {
    desk_pb2.ENTITLEMENT_STATE_ACTIVE: N_("Paid, certified"),
    desk_pb2.ENTITLEMENT_STATE_DUE: N_("Due for certification"),
    desk_pb2.ENTITLEMENT_STATE_WARNING: N_("Overdue, in warning"),
    desk_pb2.ENTITLEMENT_STATE_SUSPENDED: N_("Payment suspended"),
    desk_pb2.ENTITLEMENT_STATE_TERMINATED: N_("Ended"),
}
DELIVERY_STATES = {
    desk_pb2.DELIVERY_STATE_PENDING: N_("Waiting for delivery"),
    desk_pb2.DELIVERY_STATE_DELIVERED: N_("Delivered"),
    desk_pb2.DELIVERY_STATE_DEAD: N_("Dead letter"),
}
PAYMENT_ACTIONS = {
    desk_pb2.PAYMENT_ACTION_SUSPEND: N_("Withheld"),
    desk_pb2.PAYMENT_ACTION_RESUME: N_("Resumed with back pay"),
    desk_pb2.PAYMENT_ACTION_TERMINATE: N_("Ended"),
}
IDENTITY_TYPES = {
    "resident_id": (common_pb2.IDENTITY_TYPE_RESIDENT_ID, N_("Mainland resident ID card")),
    "hkid": (common_pb2.IDENTITY_TYPE_HKID, N_("Hong Kong identity card")),
    "macau_bir": (common_pb2.IDENTITY_TYPE_MACAU_BIR, N_("Macau resident identity card")),
    "passport": (common_pb2.IDENTITY_TYPE_PASSPORT, N_("Passport")),
}
SCHEMES = {
    desk_pb2.PENSION_SCHEME_EMPLOYEE: N_("Urban employees"),
    desk_pb2.PENSION_SCHEME_RESIDENT: N_("Urban and rural residents"),
    desk_pb2.PENSION_SCHEME_PUBLIC_SERVICE: N_("Public service"),
}

# What a refusal of each kind means to the operator; the node's own words follow in English.
REFUSALS = {
    grpc.StatusCode.INVALID_ARGUMENT: N_("Please check what you entered."),
    grpc.StatusCode.NOT_FOUND: N_("Not found: the record may not exist at this office."),
    grpc.StatusCode.ALREADY_EXISTS: N_("This has been done already."),
    grpc.StatusCode.FAILED_PRECONDITION: N_("This cannot be done now."),
    grpc.StatusCode.UNAUTHENTICATED: N_("Your session has ended. Please sign in again."),
    grpc.StatusCode.PERMISSION_DENIED: N_("You are not allowed to do this."),
    grpc.StatusCode.RESOURCE_EXHAUSTED: N_("Too many attempts. Please wait and try again."),
    grpc.StatusCode.UNAVAILABLE: N_(
        "The office's node cannot be reached just now. Try again in a moment."
    ),
    grpc.StatusCode.DEADLINE_EXCEEDED: N_(
        "The office's node did not answer in time. Try again in a moment."
    ),
}
REFUSAL_OTHER = N_("The office's node could not do this.")
HTTP_STATUSES = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.FAILED_PRECONDITION: 409,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
}
