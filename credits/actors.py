"""Who the team is told made an entry of its ledger: one of its members, or "Atelier".

`LedgerEntry.actor_label` records the operator's email on an admin grant ("user:ops@…"); that
is for the operators' books (the admin shows it), not for the team. A team sees the email of
one of its own current members (a hold made by their submit); every other actor, an operator,
a command or the pipeline, is "Atelier". The credits page and GET /api/v1/credits both ask here.
"""

from __future__ import annotations

from accounts.models import Membership, Team
from credits.models import LedgerEntry

ATELIER = "Atelier"
FORMER_MEMBER = "A former member"

# Kinds only operators and commands make: a team never grants or adjusts its own credits, so
# even an operator who is also a member of the team is "Atelier" there.
OPERATOR_KINDS = frozenset({LedgerEntry.Kind.GRANT, LedgerEntry.Kind.ADJUST, LedgerEntry.Kind.REFUND})


class LedgerActors:
    """Names the actor of each entry of one team's ledger (the members are read once).

    The entries should come with `select_related("actor")`: an actor who is not a member is
    told apart as an operator (staff) or a former member without a query each.
    """

    def __init__(self, team: Team) -> None:
        self._members = dict(Membership.objects.filter(team=team).values_list("user_id", "user__email"))

    def shown(self, entry: LedgerEntry) -> str:
        if entry.actor_id is None or entry.kind in OPERATOR_KINDS:
            return ATELIER
        member = self._members.get(entry.actor_id)
        if member is not None:
            return member
        # Someone who is not in the team now: an operator acting for it (a retry in the admin),
        # or a member who has since left, whose email the team is no longer shown.
        return ATELIER if entry.actor is not None and entry.actor.is_staff else FORMER_MEMBER
