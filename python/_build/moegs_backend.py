"""The build backend of `pip install ./python` (PEP 517, in-tree): a wheel of moegs.py and
_moegs_native.py, which records where this checkout's native/build.sh puts libmoegs.so.

In-tree because the machines this installs on reach no package index: setuptools of Python 3.11
cannot build a wheel without the `wheel` package, and a virtual environment has none. A wheel is a
zip with three metadata files, which is all this writes."""
import base64
import hashlib
import os
import zipfile

NAME, VERSION = "moegs", "0.1.0"
HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHECKOUT = os.path.dirname(HERE)
DIST_INFO = f"{NAME}-{VERSION}.dist-info"
METADATA = f"""Metadata-Version: 2.1
Name: {NAME}
Version: {VERSION}
Summary: MoeGpuStats from Python: Mixture-of-Experts routing statistics kept on the GPU (ctypes over libmoegs.so)
Requires-Python: >=3.8
License: MIT
"""
WHEEL = f"""Wheel-Version: 1.0
Generator: {NAME} in-tree backend
Root-Is-Purelib: true
Tag: py3-none-any
"""


def _files():
    with open(os.path.join(HERE, "moegs.py"), "rb") as source:
        yield "moegs.py", source.read()
    native = os.path.join(CHECKOUT, "native", "out")
    yield "_moegs_native.py", (
        '"""Written by pip install ./python: the folder native/build.sh builds libmoegs.so into."""\n'
        f"NATIVE_DIR = {native!r}\n").encode()
    yield f"{DIST_INFO}/METADATA", METADATA.encode()
    yield f"{DIST_INFO}/WHEEL", WHEEL.encode()


def _record_line(name, data):
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    wheel = f"{NAME}-{VERSION}-py3-none-any.whl"
    records = []
    with zipfile.ZipFile(os.path.join(wheel_directory, wheel), "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in _files():
            archive.writestr(name, data)
            records.append(_record_line(name, data))
        records.append(f"{DIST_INFO}/RECORD,,")
        archive.writestr(f"{DIST_INFO}/RECORD", "\n".join(records) + "\n")
    return wheel


def get_requires_for_build_wheel(config_settings=None):
    return []
