"""GET /api/v1/credits: the team's balances and its ledger, newest first."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.permissions import request_team
from config.pagination import BoundedLimitOffsetPagination
from credits.actors import LedgerActors
from credits.models import CreditAccount, LedgerEntry
from generation.models import GenerationJob
from generation.providers.catalog import price_table


class LedgerEntrySerializer(serializers.ModelSerializer):
    job_id = serializers.UUIDField(read_only=True, allow_null=True)
    output_index = serializers.SerializerMethodField()
    actor = serializers.SerializerMethodField(help_text='A member\'s email, or "Atelier" (operators, the system).')

    class Meta:
        model = LedgerEntry
        fields = [
            "id", "kind", "available_delta", "held_delta", "available_after", "held_after",
            "job_id", "output_index", "actor", "memo", "created_at",
        ]  # fmt: skip
        read_only_fields = fields  # an answer only: every field is always there

    def get_output_index(self, entry: LedgerEntry) -> int | None:
        return None if entry.output_index is None else entry.output_index + 1  # 1-based, like the API's outputs

    def get_actor(self, entry: LedgerEntry) -> str:
        return self.context["actors"].shown(entry)


class PriceSerializer(serializers.Serializer):
    """One row of price_table(): a model's price for one kind and quality."""

    provider = serializers.CharField()
    model = serializers.CharField()
    kind = serializers.ChoiceField(choices=GenerationJob.Kind.choices)
    quality = serializers.CharField()
    credits_per_output = serializers.IntegerField(allow_null=True, help_text="Images; null for video.")
    credits_per_second = serializers.IntegerField(allow_null=True, help_text="Clips; null for images.")


class CreditsView(APIView):
    pagination_class = BoundedLimitOffsetPagination  # the ledger's entries, in the envelope below

    @extend_schema(
        responses=inline_serializer(
            "Credits",
            {
                "available": serializers.IntegerField(),
                "held": serializers.IntegerField(),
                "count": serializers.IntegerField(),
                "next": serializers.URLField(allow_null=True),
                "previous": serializers.URLField(allow_null=True),
                "entries": LedgerEntrySerializer(many=True),
                "prices": PriceSerializer(many=True),
            },
        ),
        summary="The team's credit balances and ledger",
    )
    def get(self, request: Request) -> Response:
        team = request_team(request)
        account, _ = CreditAccount.objects.get_or_create(team=team)
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(account.entries.select_related("actor").order_by("-id"), request, view=self)
        return Response(
            {
                "available": account.available,
                "held": account.held,
                "count": paginator.count,
                "next": paginator.get_next_link(),
                "previous": paginator.get_previous_link(),
                "entries": LedgerEntrySerializer(page, many=True, context={"actors": LedgerActors(team)}).data,
                "prices": price_table(),
            }
        )
