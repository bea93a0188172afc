"""What a person types to create, resize or delete a pool, checked on the server."""

from typing import Any

from django import forms
from django.core.validators import RegexValidator

from portal.models import MAX_NODES_PER_KIND, Pool, PoolTemplate
from portal.pools.services import POOL_ID_PATTERN, POOL_ID_RULE


def _node_count_field(label: str) -> forms.IntegerField:
    return forms.IntegerField(
        label=label, label_suffix="", min_value=0, max_value=MAX_NODES_PER_KIND,
        error_messages={"required": "Give a number of nodes (0 for none).",
                        "invalid": "Give a whole number of nodes.",
                        "min_value": "The number of nodes cannot be negative.",
                        "max_value": f"The portal creates at most {MAX_NODES_PER_KIND} nodes of each kind."},
        widget=forms.NumberInput(attrs={"min": 0, "max": MAX_NODES_PER_KIND}))


class _NodeCountsForm(forms.Form):
    dedicated_nodes = _node_count_field("Dedicated nodes")
    # Batch's API says low-priority; Azure's pricing and the pool pages say spot.
    low_priority_nodes = _node_count_field("Spot (low-priority) nodes")


class PoolCreateForm(_NodeCountsForm):
    template = forms.ModelChoiceField(
        queryset=PoolTemplate.objects.all(), empty_label=None,
        error_messages={"invalid_choice": "That pool template no longer exists; choose another one.",
                        "required": "Choose a pool template."})
    pool_id = forms.CharField(
        label="Pool id", label_suffix="", max_length=64, strip=True,
        help_text=f"Batch's name for the pool; it cannot be changed later. {POOL_ID_RULE}",
        validators=[RegexValidator(POOL_ID_PATTERN, message=f"That pool id is not valid. {POOL_ID_RULE}")],
        error_messages={"required": "Give the new pool an id.",
                        "max_length": f"That pool id is too long. {POOL_ID_RULE}"},
        widget=forms.TextInput(attrs={"autocomplete": "off", "spellcheck": "false",
                                      "pattern": "[A-Za-z0-9_\\-]{1,64}"}))

    field_order = ["template", "pool_id", "dedicated_nodes", "low_priority_nodes"]

    @classmethod
    def initial_for(cls, template: PoolTemplate | None) -> dict:
        """The form's starting values: the template's default node counts."""
        if template is None:
            return {}
        return {"template": template.pk, "dedicated_nodes": template.default_dedicated_nodes,
                "low_priority_nodes": template.default_low_priority_nodes}


class PoolResizeForm(_NodeCountsForm):
    @classmethod
    def initial_for(cls, pool: Pool) -> dict:
        return {"dedicated_nodes": pool.target_dedicated_nodes, "low_priority_nodes": pool.target_low_priority_nodes}


class PoolDeleteForm(forms.Form):
    confirm_pool_id = forms.CharField(
        label="Type the pool id to confirm", label_suffix="", strip=True,
        error_messages={"required": "Type the pool's id to confirm that it should be deleted."},
        widget=forms.TextInput(attrs={"autocomplete": "off", "spellcheck": "false"}))

    def __init__(self, *args: Any, pool: Pool, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.pool = pool

    def clean_confirm_pool_id(self) -> str:
        typed = self.cleaned_data["confirm_pool_id"]
        # Exact, case included: the point is that the person read which pool this is.
        if typed != self.pool.pool_id:
            raise forms.ValidationError(
                "That is not this pool's id, so nothing was deleted. Type the id exactly as shown.")
        return typed
