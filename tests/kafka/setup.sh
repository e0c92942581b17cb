#!/usr/bin/env bash
# Installs what the Kafka front's real-client tests run: kafka-python
# (pinned, from PyPI, into a virtual environment of its own) and kcat
# (Debian's package). Idempotent; run by .ci/run and by the tests
# themselves (tests/processes/kafka_clients.rs), never needed by hand.
#
#   tests/kafka/setup.sh VENV_DIR
set -euo pipefail
venv=${1:?usage: setup.sh VENV_DIR}
KAFKA_PYTHON=3.0.12

if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import kafka, sys; sys.exit(kafka.__version__ != '$KAFKA_PYTHON')" 2>/dev/null; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "kafka-python==$KAFKA_PYTHON"
fi

if ! command -v kcat >/dev/null 2>&1; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq kcat >/dev/null
fi
echo "kafka-python $KAFKA_PYTHON in $venv; $(kcat -V 2>&1 | head -1)"
