"""The library as a pure-Python wheel logged beside the MLflow model, so the model's requirements install on
their own (``recsys`` is on no package index)."""

from __future__ import annotations

import hashlib
from pathlib import Path

__all__ = ["package_wheel"]

_NOT_SHIPPED = (".pyc", ".pyo", ".so", ".pyd", ".c", ".o")  # the C extensions are optional (numpy fallbacks)


def package_wheel(dst_dir: str | Path) -> Path:
    """A pure-Python wheel of the installed recsys (its .py files, no optional C extensions), written into
    ``dst_dir``: logged with the model so that its requirements install without recsys on any index.

    Byte for byte the same for the same code (sorted entries, fixed timestamps), so a logged wheel can be
    compared with this recsys's."""
    import base64
    import zipfile
    from importlib import metadata

    import recsys
    from recsys.version import __version__

    pkg = Path(recsys.__file__).resolve().parent
    files = sorted(p for p in pkg.rglob("*") if p.is_file() and "__pycache__" not in p.parts
                   and p.suffix not in _NOT_SHIPPED)
    try:
        requires = metadata.requires("recsys") or []
    except metadata.PackageNotFoundError:  # run from a source tree that was never installed
        requires = []
    info = f"recsys-{__version__}.dist-info"
    meta = "".join([f"Metadata-Version: 2.1\nName: recsys\nVersion: {__version__}\nRequires-Python: >=3.11\n",
                    *(f"Requires-Dist: {r}\n" for r in requires)])
    entries = [(f"recsys/{p.relative_to(pkg).as_posix()}", p.read_bytes()) for p in files]
    entries += [(f"{info}/METADATA", meta.encode()),
                (f"{info}/WHEEL", b"Wheel-Version: 1.0\nGenerator: recsys.tracking.model_code\n"
                                  b"Root-Is-Purelib: true\nTag: py3-none-any\n"),
                (f"{info}/entry_points.txt", b"[console_scripts]\nrecsys = recsys.cli:main\n")]
    record = "".join(f"{name},sha256={base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b'=').decode()},"
                     f"{len(data)}\n" for name, data in entries) + f"{info}/RECORD,,\n"
    entries.append((f"{info}/RECORD", record.encode()))
    out = Path(dst_dir) / f"recsys-{__version__}-py3-none-any.whl"
    out.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries:
            entry = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            entry.external_attr = 0o644 << 16
            zf.writestr(entry, data, compress_type=zipfile.ZIP_DEFLATED)
    return out
