"""The exception hierarchy and its stable codes."""

from __future__ import annotations

import pytest

from privaudit import errors

# Codes are a public contract: this table changes only by adding rows.
STABLE_CODES = {
    "PrivauditError": "privaudit_error",
    "ParameterError": "bad_parameter",
    "DataError": "bad_input_data",
    "UnsupportedFormatError": "unsupported_format",
    "NotFittedError": "not_fitted",
    "BudgetExhaustedError": "budget_exhausted",
    "LimitExceededError": "limit_exceeded",
    "NotFoundError": "not_found",
    "ConflictError": "conflict",
    "AuthenticationError": "unauthenticated",
    "PermissionDeniedError": "permission_denied",
    "MissingDependencyError": "missing_dependency",
    "ConfigurationError": "bad_configuration",
    "ConvergenceError": "did_not_converge",
    "JobCancelledError": "job_cancelled",
    "WorkUnitError": "work_unit_failed",
}


def test_every_error_class_has_its_stable_unique_code() -> None:
    classes = [cls for cls in errors.all_error_classes() if cls.__module__ == "privaudit.errors"]
    assert {cls.__name__: cls.code for cls in classes} == STABLE_CODES
    assert len({cls.code for cls in classes}) == len(classes)


def test_every_exported_error_is_documented_in_the_module_docstring() -> None:
    doc = errors.__doc__ or ""
    for name, code in STABLE_CODES.items():
        assert name in doc
        assert f"[{code}]" in doc


@pytest.mark.parametrize(
    ("cls", "builtin"),
    [
        (errors.ParameterError, ValueError),
        (errors.DataError, ValueError),
        (errors.UnsupportedFormatError, errors.DataError),
        (errors.NotFoundError, LookupError),
        (errors.NotFittedError, AttributeError),
        (errors.MissingDependencyError, ImportError),
    ],
)
def test_errors_are_also_the_matching_builtin(cls: type[Exception], builtin: type) -> None:
    assert issubclass(cls, builtin)
    assert issubclass(cls, errors.PrivauditError)


def test_details_travel_with_the_error() -> None:
    error = errors.ParameterError("epsilon must be > 0, got -1", parameter="epsilon")
    assert str(error) == "epsilon must be > 0, got -1"
    assert error.details == {"parameter": "epsilon"}
    assert error.code == "bad_parameter"
