"""The LakeHound error hierarchy and the exit code each category maps to.

Callers catch by category (a config problem, a broken contract, a bad model) and
jobs turn the category into a process exit code, so a scheduler such as Airflow can
tell "fix the config" from "upstream sent bad data" without parsing logs.
"""

from __future__ import annotations

from typing import ClassVar


class LakeHoundError(Exception):
    """Base of every error LakeHound raises on purpose."""

    exit_code: ClassVar[int] = 1


class ConfigError(LakeHoundError):
    """A config file, a ``--set`` override or a command-line argument is invalid."""

    exit_code = 2


class ContractViolation(LakeHoundError):
    """A blocking data-contract expectation failed; the run must not continue."""

    exit_code = 3


class InputError(LakeHoundError):
    """Input is missing or unreadable (a path, a partition, a table)."""

    exit_code = 4


class ModelError(LakeHoundError):
    """A model artifact is missing, tampered with, or not vouched for by the registry."""

    exit_code = 5


class ReconciliationError(LakeHoundError):
    """Row counts do not reconcile (rows in != validated + quarantined)."""

    exit_code = 6


class SetupError(LakeHoundError):
    """The environment is incomplete (for example the JVM jar cache is missing)."""

    exit_code = 7


class StorageError(LakeHoundError):
    """The lakehouse cannot be written safely: it is not writable, or a table directory
    holds data files without a readable, continuous Delta log (writing would start a new
    table over them and drop the rows they hold)."""

    exit_code = 8


EXIT_CODES: dict[str, int] = {
    cls.__name__: cls.exit_code
    for cls in (
        LakeHoundError,
        ConfigError,
        ContractViolation,
        InputError,
        ModelError,
        ReconciliationError,
        SetupError,
        StorageError,
    )
}
