"""Install ``tools/dev_torchvision_shim.py`` into the running interpreter's site-packages.

Run by ``make`` with the virtualenv's python; development/test environment only.
Writes ``priming_dev_torchvision_shim.py`` and a ``.pth`` file that calls its
``install()`` at interpreter start-up (cheap: it only registers an import hook).
"""

from __future__ import annotations

import os
import shutil
import sysconfig
from pathlib import Path

MODULE = "priming_dev_torchvision_shim"


def main() -> int:
    site = Path(sysconfig.get_paths()["purelib"])
    src = Path(__file__).with_name("dev_torchvision_shim.py")
    for name, write in (
        (f"{MODULE}.py", lambda p: shutil.copyfile(src, p)),
        (f"{MODULE}.pth", lambda p: p.write_text(f"import {MODULE}; {MODULE}.install()\n")),
    ):
        tmp = site / f".{name}.tmp"
        write(tmp)
        os.replace(tmp, site / name)
    print(f"installed the torchvision dev shim into {site}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
