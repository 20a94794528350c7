"""Shared checks of the hostile battery (issue 11): run a command, expect a clean refusal."""

import hashlib

from priming.cli import main


def hashes(folder):
    """``relative path -> sha256`` of every file under ``folder``."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def cli(argv):
    """``main(argv)``'s exit code (argparse usage errors exit via SystemExit)."""
    try:
        return main(argv)
    except SystemExit as exc:
        return exc.code


def refused(capsys, argv, *needles, inputs=None, option_names=False):
    """Run ``argv``: exit code 2, an error on stderr naming every one of ``needles``, no
    traceback, and nothing under ``inputs`` changed. With ``option_names`` a needle
    ``--x-y`` may also appear as the setting ``x_y``."""
    before = hashes(inputs) if inputs is not None else None
    rc = cli(argv)
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "Traceback" not in err and "error:" in err, err
    for n in needles:
        spelled = {n, n.lstrip("-").replace("-", "_")} if option_names else {n}
        assert any(s in err for s in spelled), err
    if inputs is not None:
        assert hashes(inputs) == before
    return err
