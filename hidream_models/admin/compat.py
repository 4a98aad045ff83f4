"""One place for what differs between the Django versions the app supports (6.0 and 6.1)."""

from __future__ import annotations


def parent_actions(parent, request, action_location=None) -> dict:
    """``parent.get_actions`` (pass ``super()``): Django 6.1 says where the actions are shown
    (change list or change form) with ``action_location``; 6.0 has no such argument."""
    if action_location is None:
        return parent.get_actions(request)
    return parent.get_actions(request, action_location=action_location)
