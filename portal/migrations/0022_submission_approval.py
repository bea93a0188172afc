"""Submissions that wait for approval: Team.approval_limit and the awaiting_approval state."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('portal', '0021_team_budgets'),
    ]

    operations = [
        migrations.AddField(
            model_name='team',
            name='approval_limit',
            field=models.DecimalField(blank=True, decimal_places=2, help_text="A submission estimated to cost more than this waits for an Operator's or an Admin's approval before anything runs. Empty: no limit.", max_digits=12, null=True),
        ),
        migrations.AlterField(
            model_name='submission',
            name='state',
            field=models.CharField(choices=[('pending', 'Pending'), ('creating_job', 'creating the job'), ('adding_tasks', 'adding tasks'), ('finalizing', 'Finalizing'), ('submitted', 'Submitted'), ('failed', 'Failed'), ('awaiting_approval', 'waiting for approval')], default='pending', max_length=20),
        ),
        migrations.AlterField(
            model_name='team',
            name='budget_currency',
            field=models.CharField(blank=True, default='USD', help_text='ISO 4217 code of the budget and the limit; empty: USD.', max_length=3),
        ),
    ]
