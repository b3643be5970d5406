#!/usr/bin/env bash
# Distributed training: tools/dist_train.sh CONFIG GPUS [train.py args]
# (torchrun; see tools/dist_launch.sh for NNODES, NODE_RANK, PORT, MASTER_ADDR, PYTHON)
exec bash "$(dirname "$0")/dist_launch.sh" train.py "$2" "$1" "${@:3}"
