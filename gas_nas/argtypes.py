"""Command-line value types (argparse `type=` callables): each checks one kind of value and
says in its error what is allowed. The CLI and the docs and benchmark scripts share them."""

from __future__ import annotations

import argparse

MAX_TRIALS = 1_000_000
MAX_SEED = 2**32 - 1  # numpy's and torch's seed range


def int_in(low: int, high: int):
    """An argparse type for an integer in low..high (the range named in its error)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer in {low}..{high}, got {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"expected an integer in {low}..{high}, got {value}")
        return value

    return parse


def study_name(text: str) -> str:
    """Study names are echoed to terminals and stored: printable, non-empty, not huge."""
    if not text.strip() or len(text) > 200 or not text.isprintable():
        raise argparse.ArgumentTypeError(f"expected 1 to 200 printable characters, got {text!r}")
    return text


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def lambda_list(text: str) -> tuple[float, ...]:
    """`--lambdas a,b,c`: size weights of the differentiable strategy, finite and >= 0."""
    from gas_nas.common.errors import SpaceError
    from gas_nas.models.spec import check_lambdas

    try:
        values = tuple(float(part) for part in text.split(","))
        check_lambdas(values, "--lambdas")
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers >= 0, got {text!r}") from None
    except SpaceError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("--lambdas: ")) from None
    return values


def cohort_size(text: str):
    """`--cohort`: `auto` or an integer in 1..MAX_COHORT."""
    from gas_nas.models.spec import MAX_COHORT

    if text == "auto":
        return text
    try:
        return int_in(1, MAX_COHORT)(text)
    except argparse.ArgumentTypeError as exc:
        raise argparse.ArgumentTypeError(f"{exc}, or auto") from None


def device_name(text: str) -> str:
    """`--device`: auto, cpu, cuda or cuda:N (checked against the machine by `_device`)."""
    from gas_nas.study.workers import parse_device

    try:
        return parse_device(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def number_list(text: str) -> list[int]:
    """`--trials N,M`: trial numbers, comma-separated."""
    try:
        numbers = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated trial numbers, got {text!r}") from None
    if any(n < 0 or n > MAX_TRIALS for n in numbers):
        raise argparse.ArgumentTypeError(f"expected trial numbers in 0..{MAX_TRIALS}, got {text!r}")
    return numbers
