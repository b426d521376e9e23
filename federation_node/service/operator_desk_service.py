"""The desk methods about operators themselves: who am I, signing in and out, preferences, the
administrator's operator list, adding, disabling and resetting operators, and the audit trail.
Mixed into `DeskServicer`; thin, like the rest of it: the work is in offices/sign_in.py and
offices/operator_accounts.py."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

import grpc

from certfed.v1 import desk_pb2
from federation.errors import InvalidInputError
from federation.principal import caller
from federation.rate_limit import peer_address
from federation.roles import role_values
from federation.timestamps import to_timestamp
from federation_node.offices.context import Actor
from federation_node.offices.node import Node
from federation_node.offices.operator_accounts import OperatorAccounts
from federation_node.rules.validation import page_size, require_text
from federation_node.store import audit, audit_check, operator_sessions, operators
from federation_node.store.models import AuditRecord, Operator, OperatorRole

ROLES = {
    OperatorRole.CLERK: desk_pb2.OPERATOR_ROLE_CLERK,
    OperatorRole.REVIEWER: desk_pb2.OPERATOR_ROLE_REVIEWER,
    OperatorRole.ADMIN: desk_pb2.OPERATOR_ROLE_ADMIN,
    OperatorRole.FEED: desk_pb2.OPERATOR_ROLE_FEED,
}
ROLE_OF = {value: role for role, value in ROLES.items()}


def role_views(roles: Iterable[str]) -> list[desk_pb2.OperatorRole.ValueType]:
    return [ROLES[OperatorRole(role)] for role in sorted(roles) if role in ROLES]


def operator_roles(values: Iterable[int]) -> list[OperatorRole]:
    roles = []
    for value in values:
        if value not in ROLE_OF:
            raise InvalidInputError("roles", "holds a value that is not an operator role")
        roles.append(ROLE_OF[desk_pb2.OperatorRole.ValueType(value)])
    return roles


def _set_time(message: object, field: str, moment: datetime | None) -> None:
    if moment is not None:
        getattr(message, field).CopyFrom(to_timestamp(moment))


def operator_summary(operator: Operator) -> desk_pb2.OperatorSummary:
    summary = desk_pb2.OperatorSummary(
        operator_id=operator.operator_id,
        label=operator.label,
        user_name=operator.user_name or "",
        roles=role_views(operator.roles),
        disabled=operator.disabled,
        created_at=to_timestamp(operator.created_at),
        locale=operator.locale,
    )
    _set_time(summary, "disabled_at", operator.disabled_at)
    _set_time(summary, "last_sign_in_at", operator.last_sign_in_at)
    return summary


def audit_record_view(record: AuditRecord) -> desk_pb2.AuditRecordView:
    return desk_pb2.AuditRecordView(
        seq=record.seq,
        recorded_at=to_timestamp(record.at),
        actor=record.actor,
        action=record.action,
        subject_type=record.subject_type,
        subject_id=record.subject_id,
        details_json=audit.canonical_details(record.details),
    )


def _actor() -> Actor:
    return Actor("operator", caller().name)


class OperatorDesk:
    """WhoAmI, SignIn, SignOut, SetOperatorPreferences and the administrator's operator and
    audit methods, for a servicer holding `_node`."""

    _node: Node

    @property
    def _accounts(self) -> OperatorAccounts:
        return self._node.operator_accounts

    def WhoAmI(
        self, request: desk_pb2.WhoAmIRequest, context: grpc.ServicerContext
    ) -> desk_pb2.WhoAmIResponse:
        principal = caller()
        node = self._node.context
        with node.session() as session:
            operator = operators.get(session, principal.name)
            live = (
                operator_sessions.get(session, principal.session_id)
                if principal.session_id
                else None
            )
        response = desk_pb2.WhoAmIResponse(
            operator_id=principal.name,
            roles=role_views(principal.roles),
            node_id=node.node_id,
            region_codes=list(node.config.region_codes),
            label=operator.label,
            user_name=operator.user_name or "",
            locale=operator.locale,
            token_expires_at=to_timestamp(
                operators.token_expiry(operator.created_at, operator.token_expires_at)
            ),
            node_roles=role_values(node.config.roles),
        )
        _set_time(response, "session_expires_at", live.expires_at if live else None)
        return response

    def SignIn(
        self, request: desk_pb2.SignInRequest, context: grpc.ServicerContext
    ) -> desk_pb2.SignInResponse:
        signed_in = self._node.sign_in.sign_in(
            request.user_name,
            request.password,
            request.client_address,
            peer_address(context.peer()),
        )
        idle = self._node.context.config.operator_sessions.idle_minutes * 60
        return desk_pb2.SignInResponse(
            session_token=signed_in.token,
            operator_id=signed_in.operator.operator_id,
            roles=role_views(signed_in.operator.roles),
            locale=signed_in.operator.locale,
            expires_at=to_timestamp(signed_in.session.expires_at),
            idle_timeout_seconds=round(idle),
        )

    def SignOut(
        self, request: desk_pb2.SignOutRequest, context: grpc.ServicerContext
    ) -> desk_pb2.SignOutResponse:
        self._node.sign_in.sign_out(_actor(), caller().session_id)
        return desk_pb2.SignOutResponse()

    def SetOperatorPreferences(
        self, request: desk_pb2.SetOperatorPreferencesRequest, context: grpc.ServicerContext
    ) -> desk_pb2.SetOperatorPreferencesResponse:
        self._accounts.set_locale(_actor(), request.locale)
        return desk_pb2.SetOperatorPreferencesResponse()

    def ListOperators(
        self, request: desk_pb2.ListOperatorsRequest, context: grpc.ServicerContext
    ) -> desk_pb2.ListOperatorsResponse:
        return desk_pb2.ListOperatorsResponse(
            operators=[operator_summary(operator) for operator in self._accounts.list_all()]
        )

    def AddOperator(
        self, request: desk_pb2.AddOperatorRequest, context: grpc.ServicerContext
    ) -> desk_pb2.AddOperatorResponse:
        operator = self._accounts.add(
            _actor(),
            label=request.label,
            user_name=request.user_name,
            password=request.password,
            roles=operator_roles(request.roles),
            locale=request.locale,
        )
        return desk_pb2.AddOperatorResponse(operator=operator_summary(operator))

    def DisableOperator(
        self, request: desk_pb2.DisableOperatorRequest, context: grpc.ServicerContext
    ) -> desk_pb2.DisableOperatorResponse:
        operator = self._accounts.disable(_actor(), request.operator_id)
        return desk_pb2.DisableOperatorResponse(operator=operator_summary(operator))

    def ResetOperatorPassword(
        self, request: desk_pb2.ResetOperatorPasswordRequest, context: grpc.ServicerContext
    ) -> desk_pb2.ResetOperatorPasswordResponse:
        self._accounts.reset_password(_actor(), request.operator_id, request.new_password)
        return desk_pb2.ResetOperatorPasswordResponse()

    def ListAuditRecords(
        self, request: desk_pb2.ListAuditRecordsRequest, context: grpc.ServicerContext
    ) -> desk_pb2.ListAuditRecordsResponse:
        limits = self._node.context.config.limits
        size = page_size(request.page_size, limits)
        for name in ("actor", "action_prefix", "subject_id"):
            require_text(getattr(request, name), name, limits)
        which = audit.AuditFilter(request.actor, request.action_prefix, request.subject_id)
        office = self._node.context
        with office.session() as session:
            records, token, total = audit.page(session, which, size, request.page_token)
        check = audit_check.check_new(office.engine, office.now())
        response = desk_pb2.ListAuditRecordsResponse(
            records=[audit_record_view(record) for record in records],
            next_page_token=token,
            total_size=total,
            chain_verified=check.intact,
            chain_problems=check.problems,
            chain_verified_through=check.through_seq,
            chain_newest=check.newest_seq,
            chain_full_check_through=check.full_pass_through,
            chain_problems_dropped=check.problems_dropped,
        )
        _set_time(response, "chain_full_check_time", check.full_pass_at)
        return response
