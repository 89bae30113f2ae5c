"""The lowest layer: named registries and plugin loading shared by sparse, attacks and tasks."""

from .registry import PluginError, Registry, UnknownNameError, unknown_name_message

__all__ = ["PluginError", "Registry", "UnknownNameError", "unknown_name_message"]
