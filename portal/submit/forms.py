"""The submit form, generated from a job template's parameters.

The form only carries values and gives the browser what it needs to check them first (required, min/max/step,
maxlength, pattern, accept); the server's own check is portal.submit.services.submission_prepare, whose
plain-language errors the view puts next to each field. Its fields therefore take text and leave the judging to
the service."""

from __future__ import annotations

from typing import Any

from django import forms

from portal.models import Submission
from portal.submit.spec import SUBMISSION_NAME_FIELD, Parameter, TemplateSpec


class TokensField(forms.Field):
    """The upload tokens of one file parameter: one hidden input each, written by static/js/upload.js."""

    widget = forms.MultipleHiddenInput

    def to_python(self, value: Any) -> list[str]:
        if not value:
            return []
        return [str(item) for item in value if str(item).strip()]


class SubmitForm(forms.Form):
    """Built per template version by `submit_form_class`; the hidden fields say what the values are for."""

    template_version = forms.CharField(widget=forms.HiddenInput)
    rerun = forms.CharField(widget=forms.HiddenInput, required=False)

    # Its name has a hyphen no parameter name may have (spec.NAME_PATTERN), so no template's parameter clashes with
    # it. Its length and characters are judged by services.submission_name_clean.
    NAME_FIELD = SUBMISSION_NAME_FIELD

    spec: TemplateSpec
    file_parameters: tuple[Parameter, ...] = ()

    def parameter_values(self) -> dict[str, Any]:
        """The non-file values as posted (text), for the service to check; a checkbox left off is "false"."""
        values: dict[str, Any] = {}
        for parameter in self.spec.parameters:
            if parameter.type in ("file", "files"):
                continue
            if parameter.type == "boolean":
                values[parameter.name] = "true" if self.data.get(parameter.name) else "false"
            elif parameter.name in self.data:
                values[parameter.name] = self.data.get(parameter.name)
        return values

    def tokens(self) -> dict[str, list[str]]:
        # A bound form's data is the request's QueryDict.
        return {p.name: [t for t in self.data.getlist(p.name) if t.strip()]  # type: ignore[attr-defined]
                for p in self.file_parameters}

    def name_field(self) -> forms.BoundField:
        return self[self.NAME_FIELD]

    def submission_name(self) -> str:
        return str(self.data.get(self.NAME_FIELD, ""))

    def field_rows(self) -> list[tuple[Parameter, forms.BoundField]]:
        """(parameter, bound field) in the template's order, for the template to lay out by type."""
        return [(parameter, self[parameter.name]) for parameter in self.spec.parameters]


def submit_form_class(spec: TemplateSpec, *, command_line_allowed: bool) -> type[SubmitForm]:
    fields: dict[str, forms.Field] = {SubmitForm.NAME_FIELD: forms.CharField(
        label="Name (optional)", label_suffix="", required=False,
        help_text="What you will know it by in the job list and e-mails. Left empty, it is the template's name and "
                  "today's date.",
        widget=forms.TextInput(attrs={"maxlength": Submission.NAME_MAX_LENGTH, "autocomplete": "off"}))}
    for parameter in spec.parameters:
        fields[parameter.name] = _field_for(parameter)
    if command_line_allowed:
        fields["command_line"] = forms.CharField(
            label="Command line", label_suffix="", required=False, strip=False,
            help_text="What each task runs; {name} stands for a parameter's value, quoted for you. Leave it as it "
                      "is to use the template's.",
            widget=forms.Textarea(attrs={"rows": 3, "spellcheck": "false", "class": "mono"}))
    attrs = {**fields, "spec": spec,
             "file_parameters": tuple(p for p in spec.parameters if p.type in ("file", "files"))}
    return type("GeneratedSubmitForm", (SubmitForm,), attrs)


def _field_for(parameter: Parameter) -> forms.Field:
    common: dict[str, Any] = {"label": parameter.label, "label_suffix": "", "help_text": parameter.help,
                              "required": False}
    required: dict[str, Any] = {"required": True} if parameter.required else {}
    kind = parameter.type
    if kind == "string":
        attrs: dict[str, Any] = {**required, "maxlength": parameter.max_length, "autocomplete": "off",
                                 "spellcheck": "false"}
        if parameter.pattern:
            attrs["pattern"] = parameter.pattern
        widget = (forms.Textarea(attrs={**attrs, "rows": 4}) if parameter.max_length > 200
                  else forms.TextInput(attrs=attrs))
        return forms.CharField(strip=False, widget=widget, initial=parameter.default, **common)
    if kind in ("integer", "number"):
        attrs = {**required, "step": "1" if kind == "integer" else "any"}
        if parameter.min is not None:
            attrs["min"] = f"{parameter.min:g}"
        if parameter.max is not None:
            attrs["max"] = f"{parameter.max:g}"
        return forms.CharField(widget=forms.NumberInput(attrs=attrs), initial=parameter.default, **common)
    if kind == "boolean":
        return forms.BooleanField(widget=forms.CheckboxInput, initial=bool(parameter.default), **common)
    if kind == "choice":
        choices = [(c, c) for c in parameter.choices]
        if not parameter.required or parameter.default is None:
            choices = [("", "— choose —"), *choices]
        return forms.CharField(widget=forms.Select(choices=choices, attrs=required), initial=parameter.default,
                               **common)
    return TokensField(**common)


def accept_attribute(parameter: Parameter) -> str:
    return ",".join(parameter.extensions)


def initial_from(submission: Submission, spec: TemplateSpec) -> dict:
    """A re-run's starting values: what the earlier submission used, as the form shows them."""
    initial: dict[str, Any] = {}
    for parameter in spec.parameters:
        if parameter.type in ("file", "files") or parameter.name not in submission.parameters:
            continue
        value = submission.parameters[parameter.name]
        if parameter.type == "boolean":
            initial[parameter.name] = bool(value)
        elif isinstance(value, float) and value.is_integer():
            initial[parameter.name] = f"{value:g}"
        else:
            initial[parameter.name] = str(value)
    if submission.command_line:
        initial["command_line"] = submission.command_line
    return initial
