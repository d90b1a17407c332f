"""On PostgreSQL the database itself refuses to change or remove a ledger entry."""

from django.db import migrations

CREATE = """
CREATE OR REPLACE FUNCTION credits_ledger_entry_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'credits_ledgerentry is append-only: % is not allowed', TG_OP;
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER credits_ledger_entry_append_only
    BEFORE UPDATE OR DELETE ON credits_ledgerentry
    FOR EACH ROW EXECUTE FUNCTION credits_ledger_entry_append_only();
"""
DROP = """
DROP TRIGGER IF EXISTS credits_ledger_entry_append_only ON credits_ledgerentry;
DROP FUNCTION IF EXISTS credits_ledger_entry_append_only();
"""


def _on_postgresql(sql):
    def run(apps, schema_editor):
        if schema_editor.connection.vendor == "postgresql":
            schema_editor.execute(sql, params=None)

    return run


def create_missing_accounts(apps, schema_editor):
    """Teams made before credits existed get an empty account, so operators can grant to them."""
    Team = apps.get_model("accounts", "Team")
    CreditAccount = apps.get_model("credits", "CreditAccount")
    CreditAccount.objects.bulk_create(
        [CreditAccount(team=team) for team in Team.objects.filter(credit_account__isnull=True)]
    )


class Migration(migrations.Migration):
    dependencies = [("credits", "0001_initial"), ("accounts", "0001_initial")]

    operations = [
        migrations.RunPython(_on_postgresql(CREATE), _on_postgresql(DROP)),
        migrations.RunPython(create_missing_accounts, migrations.RunPython.noop),
    ]
