import os
import subprocess
import sys
from pathlib import Path

import pytest

import priming
from priming.cli import main
from priming.errors import ConfigError, PrimingError, UnknownNameError
from priming.registry import Registry


def test_version_and_errors():
    assert priming.__version__
    assert issubclass(ConfigError, PrimingError)
    assert issubclass(ConfigError, ValueError)


def test_registry_unknown_name_lists_choices():
    reg: Registry[int] = Registry("widget")
    reg.register("a", 1)
    reg.register("b", 2)
    assert reg.get("b") == 2
    with pytest.raises(UnknownNameError, match="valid choices: a, b"):
        reg.get("c")
    with pytest.raises(ValueError, match="already registered"):
        reg.register("a", 3)


def test_cli_help_runs(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    assert "demo" in capsys.readouterr().out


def test_python_dash_m_runs():
    # run the checkout's own sources, whichever copy of the package the venv points at
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    out = subprocess.run(
        [sys.executable, "-m", "priming", "--version"],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    assert out.stdout.startswith("priming ")


def test_not_fitted_error_is_sklearns_and_ours():
    from sklearn.exceptions import NotFittedError as SkNotFitted

    from priming.errors import NotFittedError

    assert issubclass(NotFittedError, SkNotFitted)
    assert issubclass(NotFittedError, PrimingError)
    assert priming.NotFittedError is NotFittedError


def test_cli_start_does_not_import_heavy_packages():
    code = (
        "import sys, priming.cli; priming.cli.build_parser(); "
        "heavy = [m for m in ('sklearn', 'scipy', 'torch', 'pyarrow', 'matplotlib') if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    assert out.stdout.strip() == ""


def test_cli_turns_os_errors_into_one_line(capsys, monkeypatch):
    import argparse

    def boom(args: argparse.Namespace) -> int:
        raise PermissionError(13, "Permission denied", "/root/forbidden")

    from priming import cli

    parser = cli.build_parser()
    monkeypatch.setattr(cli, "build_parser", lambda: parser)
    parser.set_defaults(func=boom, command="demo")
    assert main([]) == 1
    err = capsys.readouterr().err
    assert err.startswith("priming demo: error:") and "/root/forbidden" in err
    assert "Traceback" not in err


def test_import_priming_is_cheap_and_the_job_api_lazy():
    code = (
        "import sys, priming; "
        "heavy = [m for m in ('numpy', 'sklearn', 'scipy', 'torch', 'pyarrow', 'matplotlib', "
        "'priming.job.run', 'priming.heads') if m in sys.modules]; "
        "print(','.join(heavy)); "
        "import priming.job; print('numpy' in sys.modules); "
        "from priming.job.run import run_prime; from priming.job.config import PrimeConfig; "
        "from priming.job.predict import predict; "
        "print(priming.run_prime is run_prime, priming.PrimeConfig is PrimeConfig, "
        "priming.predict is predict, priming.job.predict is predict)"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    assert out.stdout.splitlines() == ["", "False", "True True True True"]
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        priming.nope  # noqa: B018
