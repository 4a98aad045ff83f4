"""The generate form shown by the admin action (and reusable in a shop's own views).

Its rules are not written here: ``clean()`` hands the values to the same serializer the client
and the REST API use (``rules.ModelImageOptionsSerializer``), and maps its errors onto the
fields.
"""

from __future__ import annotations

from django import forms
from django.utils.text import format_lazy
from django.utils.translation import gettext_lazy as _

from .conf import hidream_settings
from .exceptions import HiDreamValidationError
from .images import ImageProblem
from .models import GenerationMode, HiDreamPreset, HiDreamTemplate, TemplateKind
from .rules import IMAGE_COUNT_MAX, IMAGE_COUNT_MIN, PROMPT_MAX_LENGTH
from .services import GenerationOptions, VerifiedUpload, verify_upload

# Serializer error keys → form fields.
ERROR_FIELDS = {
    "template.human_template_id": "human_template",
    "template.scene_template_id": "scene_template",
    "prompt": "prompt",
    "image_count": "image_count",
}


class TemplateChoiceField(forms.ModelChoiceField):
    """Active templates of one kind, labelled in the user's language."""

    def label_from_instance(self, obj: HiDreamTemplate) -> str:
        return obj.display_name()


class GenerateModelImagesForm(forms.Form):
    """What to generate for the selected products: a preset, or a mode and its options."""

    preset = forms.ModelChoiceField(
        label=_("Preset"),
        queryset=HiDreamPreset.objects.none(),
        required=False,
        empty_label=_("— none, choose below —"),
        help_text=_("A saved look: its model, scene or prompt and picture count are used."),
    )
    mode = forms.ChoiceField(
        label=_("Generate from"),
        choices=GenerationMode.choices,
        initial=GenerationMode.TEMPLATE,
        widget=forms.RadioSelect,
    )
    human_template = TemplateChoiceField(
        label=_("Model"),
        queryset=HiDreamTemplate.objects.none(),
        required=False,
        widget=forms.RadioSelect,
        empty_label=None,
    )
    scene_template = TemplateChoiceField(
        label=_("Scene"),
        queryset=HiDreamTemplate.objects.none(),
        required=False,
        widget=forms.RadioSelect,
        empty_label=None,
    )
    prompt = forms.CharField(
        label=_("Prompt"),
        required=False,
        max_length=PROMPT_MAX_LENGTH,
        widget=forms.Textarea(attrs={"rows": 4, "maxlength": PROMPT_MAX_LENGTH}),
        # format_lazy: formatting now would freeze the text in the import-time language.
        help_text=format_lazy(
            _("Describe the model and the scene, up to {n} characters."), n=PROMPT_MAX_LENGTH
        ),
    )
    image_count = forms.IntegerField(
        label=_("Pictures per product"),
        min_value=IMAGE_COUNT_MIN,
        max_value=IMAGE_COUNT_MAX,
        initial=2,
        widget=forms.NumberInput(attrs={"min": IMAGE_COUNT_MIN, "max": IMAGE_COUNT_MAX}),
    )
    mask = forms.FileField(
        label=_("Mask (optional)"),
        required=False,
        help_text=_("A custom mask from HiDream's smart cut-out tool; one product only."),
    )

    def __init__(self, *args, product_count: int = 1, **kwargs):
        super().__init__(*args, **kwargs)
        self.product_count = product_count
        active = HiDreamTemplate.objects.filter(is_active=True)
        self.fields["human_template"].queryset = active.filter(kind=TemplateKind.HUMAN)
        self.fields["scene_template"].queryset = active.filter(kind=TemplateKind.SCENE)
        self.fields["preset"].queryset = HiDreamPreset.objects.filter(is_active=True)
        if not self.fields["preset"].queryset.exists():
            del self.fields["preset"]
        if product_count != 1:
            del self.fields["mask"]

    def clean_mask(self) -> VerifiedUpload | None:
        """The mask decoded whole (JPEG, PNG or WebP), to be stored under a name the app
        makes: the file name the person gave it is never used."""
        mask = self.cleaned_data.get("mask")
        if not mask:
            return None
        limit = hidream_settings.MAX_UPLOAD_BYTES
        if mask.size > limit:
            raise forms.ValidationError(
                _("The mask is larger than %(n)s bytes (HIDREAM_MAX_UPLOAD_BYTES).") % {"n": limit}
            )
        try:
            return verify_upload(mask, _("The mask"))
        except ImageProblem as exc:
            raise forms.ValidationError(str(exc)) from None

    def clean(self):
        cleaned = super().clean()
        self.preset = cleaned.get("preset")
        if self.preset is not None:
            # The preset decides; errors in the fields below are beside the point then.
            for name in ("mode", "human_template", "scene_template", "prompt", "image_count"):
                self.errors.pop(name, None)
            try:
                self.options = GenerationOptions.validated(self.preset.as_request())
            except HiDreamValidationError as exc:
                self.add_error("preset", _("This preset is incomplete: %(e)s") % {"e": exc})
            return cleaned
        if self.errors:
            return cleaned
        data: dict = {"image_count": cleaned.get("image_count")}
        if cleaned.get("mode") == GenerationMode.TEMPLATE:
            human, scene = cleaned.get("human_template"), cleaned.get("scene_template")
            data["template"] = {
                "human_template_id": human.remote_id if human else "",
                "scene_template_id": scene.remote_id if scene else "",
            }
        else:
            data["prompt"] = cleaned.get("prompt", "")
            if not data["prompt"].strip():
                self.add_error("prompt", _("Write a prompt, or choose templates instead."))
                return cleaned
        try:
            self.options = GenerationOptions.validated(data)
        except HiDreamValidationError as exc:
            for key, messages in exc.errors.items():
                field = ERROR_FIELDS.get(key)
                for message in messages:
                    if field == "human_template" and "blank" in message:
                        message = _("Choose a model.")
                    elif field == "scene_template" and "blank" in message:
                        message = _("Choose a scene.")
                    self.add_error(field, message)
        return cleaned
