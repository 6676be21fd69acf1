"""Expected failures. Each is printed by the CLI as one line on stderr with exit status 2."""

from __future__ import annotations


class XbenchError(Exception):
    """Base class of every error the user can fix (bad name, bad config, bad data, bad plugin)."""


class ConfigError(XbenchError):
    """A configuration file or override is malformed, has an unknown key or a wrong type."""


class RegistryError(XbenchError):
    """A name is unknown, or two plugins register the same name."""


class PluginError(XbenchError):
    """A plugin failed to import, raised inside a hook or misbehaved at run time."""


class DataError(XbenchError):
    """A data file is missing, corrupt or does not match its manifest."""


class MissingAudio(DataError):
    """A video has no audio track, and the run reads audio (a task may skip such videos)."""


class IncompatibleError(XbenchError):
    """A method cannot run on a task/dataset (a modality or output it needs is missing)."""


class CheckpointError(XbenchError):
    """A stage checkpoint of an interrupted run could not be restored (it was removed: run again)."""


class StoreError(XbenchError):
    """The results store cannot be read (an empty or damaged database: ``xbench runs --rebuild``)."""


class WriteError(XbenchError):
    """A file could not be written: the disk or the user's quota is full, or the folder is
    read-only. Written whole or not at all, nothing was replaced."""


class CellBusy(XbenchError):
    """Another live process runs this config and seed (its lease in the store): exit status 4,
    which a sweep reads as "running elsewhere", not as a failure."""

    exit_code = 4
