"""Copies the shared libraries out of Python wheels into one flat folder.

The service needs ONNX Runtime's C library (and, for the CUDA image, the CUDA and cuDNN
libraries), not Python: the Dockerfile downloads the wheels that carry them with
`pip download --no-deps` and this script takes every `lib*.so*` file out of them, so the image
holds the libraries and nothing else from the wheels. Used at image build time only.

    python3 extract-libs.py DEST WHEEL...
"""
import os
import sys
import zipfile


def main(dest, wheels):
    os.makedirs(dest, exist_ok=True)
    copied = 0
    for wheel in wheels:
        with zipfile.ZipFile(wheel) as z:
            for member in z.namelist():
                name = os.path.basename(member)
                if name.startswith("lib") and ".so" in name:
                    with open(os.path.join(dest, name), "wb") as out:
                        out.write(z.read(member))
                    print(f"{wheel}: {member}")
                    copied += 1
    if copied == 0:
        sys.exit(f"no lib*.so* file in {wheels}")


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2:])
