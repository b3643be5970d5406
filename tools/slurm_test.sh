#!/usr/bin/env bash
# Slurm testing: tools/slurm_test.sh PARTITION JOB_NAME CONFIG CHECKPOINT [test.py args]
# (see tools/slurm_launch.sh for GPUS, GPUS_PER_NODE, CPUS_PER_TASK, SRUN_ARGS, PYTHON)
exec bash "$(dirname "$0")/slurm_launch.sh" test.py "$1" "$2" "$3" "$4" "${@:5}"
