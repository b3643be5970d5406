#!/usr/bin/env bash
# Distributed testing: tools/dist_test.sh CONFIG CHECKPOINT GPUS [test.py args]
# (torchrun; see tools/dist_launch.sh for NNODES, NODE_RANK, PORT, MASTER_ADDR, PYTHON)
exec bash "$(dirname "$0")/dist_launch.sh" test.py "$3" "$1" "$2" "${@:4}"
