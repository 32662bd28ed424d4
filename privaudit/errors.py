"""The one exception hierarchy of privaudit.

Every error privaudit raises on purpose is a :class:`PrivauditError`. Each class has a
stable, machine-readable ``code`` (a snake_case string that never changes once
released); the REST service turns the code into an RFC 9457 problem document whose
``type`` is ``/v1/errors/{code}`` (docs/errors.md lists them all), and the CLI prints it.
Catch the base class to catch everything; catch a subclass for one kind of failure.
Where a builtin exception means the same thing, the class also derives from it
(``ParameterError`` is a ``ValueError``), so ordinary Python code keeps working.

Hierarchy (stable code in brackets; each class's docstring says when it is raised)::

    PrivauditError                          [privaudit_error]
    ├── ParameterError(ValueError)          [bad_parameter]
    ├── DataError(ValueError)               [bad_input_data]
    │   └── UnsupportedFormatError          [unsupported_format]
    ├── NotFittedError(AttributeError)      [not_fitted]
    ├── BudgetExhaustedError                [budget_exhausted]
    ├── LimitExceededError                  [limit_exceeded]
    ├── NotFoundError(LookupError)          [not_found]
    ├── ConflictError                       [conflict]
    ├── AuthenticationError                 [unauthenticated]
    ├── PermissionDeniedError               [permission_denied]
    ├── MissingDependencyError(ImportError) [missing_dependency]
    ├── ConfigurationError                  [bad_configuration]
    ├── ConvergenceError                    [did_not_converge]
    ├── JobCancelledError                   [job_cancelled]
    └── WorkUnitError                       [work_unit_failed]

Every error message says what was given, what is allowed, and how to fix it.

Examples
--------
>>> from privaudit.errors import ParameterError, PrivauditError
>>> try:
...     raise ParameterError("epsilon must be > 0, got -1.0; pass a positive float")
... except PrivauditError as error:
...     print(error.code)
bad_parameter
"""

from __future__ import annotations

from typing import Any, ClassVar

__all__ = [
    "AuthenticationError",
    "BudgetExhaustedError",
    "ConfigurationError",
    "ConflictError",
    "ConvergenceError",
    "DataError",
    "JobCancelledError",
    "LimitExceededError",
    "MissingDependencyError",
    "NotFittedError",
    "NotFoundError",
    "ParameterError",
    "PermissionDeniedError",
    "PrivauditError",
    "UnsupportedFormatError",
    "WorkUnitError",
    "all_error_classes",
]


class PrivauditError(Exception):
    """Base class of every error privaudit raises on purpose.

    Parameters
    ----------
    message
        What went wrong, what is allowed, and how to fix it.
    **details
        Machine-readable context (for example ``parameter="epsilon"``); the REST
        service adds it to the problem document as extension members.
    """

    code: ClassVar[str] = "privaudit_error"
    title: ClassVar[str] = "privaudit error"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details: dict[str, Any] = details

    def __str__(self) -> str:
        return self.message


class ParameterError(PrivauditError, ValueError):
    """A parameter is out of its allowed range or of the wrong type."""

    code = "bad_parameter"
    title = "Bad parameter"


class DataError(PrivauditError, ValueError):
    """Input data is malformed, inconsistent, or of the wrong shape or type."""

    code = "bad_input_data"
    title = "Bad input data"


class UnsupportedFormatError(DataError):
    """A file format or encoding that privaudit refuses to read (pickle, for one)."""

    code = "unsupported_format"
    title = "Unsupported format"


class NotFittedError(PrivauditError, AttributeError):
    """A fitted attribute (ending in ``_``) was read before ``fit`` was called."""

    code = "not_fitted"
    title = "Estimator not fitted"


class BudgetExhaustedError(PrivauditError):
    """Spending more privacy budget or more queries than were granted."""

    code = "budget_exhausted"
    title = "Budget exhausted"


class LimitExceededError(PrivauditError):
    """A size, time or count limit set by the operator would be exceeded."""

    code = "limit_exceeded"
    title = "Limit exceeded"


class NotFoundError(PrivauditError, LookupError):
    """The named object does not exist, or belongs to someone else."""

    code = "not_found"
    title = "Not found"


class ConflictError(PrivauditError):
    """The request contradicts the object's current state (e.g. reusing an idempotency key)."""

    code = "conflict"
    title = "Conflict"


class AuthenticationError(PrivauditError):
    """No credentials were given, or they are not valid."""

    code = "unauthenticated"
    title = "Authentication required"


class PermissionDeniedError(PrivauditError):
    """The credentials are valid but lack the scope the operation needs."""

    code = "permission_denied"
    title = "Permission denied"


class MissingDependencyError(PrivauditError, ImportError):
    """An optional extra is not installed; the message names the ``pip install`` to run."""

    code = "missing_dependency"
    title = "Missing optional dependency"


class ConfigurationError(PrivauditError):
    """Settings, environment variables or a config file are invalid."""

    code = "bad_configuration"
    title = "Bad configuration"


class ConvergenceError(PrivauditError):
    """A numerical method (MCMC, an iterative solver) did not reach its accuracy target."""

    code = "did_not_converge"
    title = "Did not converge"


class JobCancelledError(PrivauditError):
    """Raised inside a running job when its owner asked to cancel it."""

    code = "job_cancelled"
    title = "Job cancelled"


class WorkUnitError(PrivauditError):
    """A work unit failed on an executor's worker (its function raised, or its worker died).

    ``details`` has the unit's ``index``, the exception's type (``error_type``), and
    the worker's traceback (``remote_traceback``) when there is one.
    """

    code = "work_unit_failed"
    title = "Work unit failed"


def all_error_classes() -> list[type[PrivauditError]]:
    """Return every error class, base first, in a stable order (for docs and the API)."""
    found: list[type[PrivauditError]] = []
    pending: list[type[PrivauditError]] = [PrivauditError]
    while pending:
        cls = pending.pop(0)
        found.append(cls)
        pending.extend(sorted(cls.__subclasses__(), key=lambda sub: sub.__name__))
    return found
