"""Files costplan writes for the user (plan --write, plot -o, calibrate --output): checked before any work,
never overwritten unless asked, and written whole or not at all (a temporary file beside it, then a rename)."""
from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from costplan.errors import CostplanError, printable

NAME_MAX = 255  # bytes in one path component on Linux and macOS file systems
PATH_MAX = 4096  # bytes in a whole path, its terminating NUL included, on Linux (1024 on macOS)


def too_long(path: str | os.PathLike) -> str:
    """What in the path is longer than a file system allows (the OS would raise on it), or '' when nothing is."""
    if any(len(os.fsencode(part)) > NAME_MAX for part in Path(path).parts):
        return f"a file name is longer than {NAME_MAX} bytes"
    if len(os.fsencode(os.fspath(path))) >= PATH_MAX:
        return f"the path is longer than {PATH_MAX - 1} bytes"
    return ""


def check_output(option: str, path: str | os.PathLike, force: bool = False) -> Path:
    """The output path, once it is known to be writable: called before any long work, so that a bad path
    fails in a second, not after the measurement it was meant to keep."""
    if str(path) in ("", "-"):      # Path("") is the current folder; "-" would be a file named "-"
        raise CostplanError(f"{option} {str(path) or repr('')}: give a file name (this option writes a file, "
                            "not to standard output)")
    target = Path(path)
    problem = too_long(target)
    label = f"{option} {printable(path, cut=bool(problem))}"
    if problem:
        raise CostplanError(f"{label}: {problem}")
    if target.is_dir():
        raise CostplanError(f"{label}: is a folder; give a file name")
    written = target
    if target.is_symlink():
        try:
            target.resolve(strict=True)
        except FileNotFoundError:
            pass        # a link to a file not there yet: the file is written where it points
        except (OSError, RuntimeError):     # a loop: RuntimeError before Python 3.13
            raise CostplanError(f"{label}: is a link that cannot be followed (a loop); give a file name") from None
        written = Path(os.path.realpath(target))     # write_atomically writes there: its folder is checked
    if target.exists() and not target.is_file():
        # a written file replaces its target by a rename: a device, a pipe or a socket would become a plain file
        raise CostplanError(f"{label}: is not a regular file (a device, a pipe or a socket); give a file name")
    folder = written.parent if str(written.parent) else Path(".")
    if not folder.is_dir():
        if folder.exists():
            raise CostplanError(f"{label}: {folder} is a file, not a folder")
        raise CostplanError(f"{label}: the folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise CostplanError(f"{label}: the folder {folder} is not writable")
    import tempfile     # here, as in write_atomically
    try:    # access() says yes to root on a read-only mount or /proc: a file made and removed says for sure
        tempfile.TemporaryFile(dir=folder).close()
    except OSError as exc:
        raise CostplanError(f"{label}: cannot write in the folder {folder}: {exc.strerror or exc}") from None
    if target.exists() and not force:
        raise CostplanError(f"{label}: the file exists; pass --force to replace it")
    return target


def check_spec_output(option: str, path: str | os.PathLike, force: bool = False) -> Path:
    """check_output for a spec written as YAML: not under a .json name, which every command reads as a Hugging
    Face config (so the file would not load back)."""
    target = check_output(option, path, force)
    written = Path(os.path.realpath(target))      # a link is written through, onto the file it names
    if target.suffix.lower() == ".json" or written.suffix.lower() == ".json":
        # a .json name is renamed; a link of another name to a .json file (a config) is not written through
        through = "" if target.suffix.lower() == ".json" else f" (a link to {written.name})"
        fix = "write it to a file of its own" if through else "give the file a .yaml name"
        raise CostplanError(f"{option} {printable(path, cut=False)}{through}: a spec is written as YAML, and a "
                            f".json file is read as a Hugging Face config; {fix}")
    return target


def write_atomically(option: str, path: str | os.PathLike, write: Callable[[Path], None],
                     force: bool = False) -> Path:
    """Call write(temporary path) and move the result onto path: a failure (full disk, an error while
    rendering) leaves the old file, if any, as it was."""
    import tempfile   # here: an estimate imports this module for its checks and writes nothing

    target = check_output(option, path, force)
    if target.is_symlink():     # replace what the link points at, and keep the link
        target = Path(os.path.realpath(target))
    temporary = ""
    try:  # the temporary file itself may fail too: a read-only file system, a full disk, a quota
        handle, temporary = tempfile.mkstemp(prefix=f".{target.name[:200]}.", suffix=".tmp",
                                             dir=target.parent if str(target.parent) else ".")
        os.close(handle)
        write(Path(temporary))
        if target.exists() and not force:  # created meanwhile by someone else: still not ours to replace
            raise CostplanError(f"{option} {path}: the file exists; pass --force to replace it")
        os.chmod(temporary, _mode(target))     # mkstemp's 0600 would hide the file from the user's group
        os.replace(temporary, target)
    except OSError as exc:
        raise CostplanError(f"{option} {path}: cannot write: {exc.strerror or exc}") from None
    finally:
        if temporary and os.path.exists(temporary):
            os.unlink(temporary)
    return target


def _mode(target: Path) -> int:
    """The permissions a written file gets: a replaced file's own, else what the umask leaves of rw-rw-rw-."""
    import stat

    if target.exists():
        return stat.S_IMODE(target.stat().st_mode)
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def write_text(option: str, path: str | os.PathLike, text: str, force: bool = False) -> Path:
    """write_atomically for a text file (UTF-8)."""
    return write_atomically(option, path, lambda tmp: tmp.write_text(text, encoding="utf-8"), force)
