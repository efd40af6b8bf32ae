#!/usr/bin/env bash
# The claim on MNIST-SVHN-Text offline with a renderer version >= 2, as one resumable queue.
#
#     git clone -q . ~/crmvae_jax_queue/code     # the code the queue runs, frozen
#     cd ~/crmvae_jax_queue/code && nohup nice -n 10 bash experiments/paper/mst_offline_queue.sh 3 gate \
#         >> ~/crmvae_jax_queue/queue.log 2>&1 &
#
# Each leg is `python -m experiments.paper.reproduce` with budgets; a (run, budget) that has
# results in the queue's reproduce_curves.json is not trained again, and a run resumes
# from its newest checkpoint, so the queue can be stopped at any moment (kill, a
# session's end) and started again with the same command. Runs and judges live outside
# the repository (QUEUE_ROOT, default ~/crmvae_jax_queue), so that neither a fresh
# checkout nor edits to the repository disturb them.
#
# The records are what must outlive the machine: a home folder is not kept when the
# machine changes, and the runs' checkpoints and the judges go with it. Point
# QUEUE_RESULTS at a checkout's experiments/results and each record lands there the
# moment it is made, to be committed with the checkout:
#
#     QUEUE_RESULTS=/path/to/checkout/experiments/results nohup nice -n 10 bash \
#         experiments/paper/mst_offline_queue.sh 3 claim >> ~/crmvae_jax_queue/queue.log 2>&1 &
#
# On a new machine the queue starts from the committed records and trains only what has
# none. Two more things are kept beside the records, to be committed with them:
#   judges/<data>  the judges the queue trained. Judges trained again on another machine
#                  come out different (their digests and their readings differ), so the
#                  queue restores these before a leg and every machine judges alike. A
#                  budget whose record was judged by other judges is evaluated again
#                  when its run passes it.
#   carry/<data>   when the queue stops (a session's end), the newest checkpoint of each
#                  run short of its last budget (~15 MB each; only the newest is kept, and
#                  none once the run reached its last budget). The next machine puts them
#                  back and goes on from the exact state saved instead of from step 0
#                  (on the same CPU, bit for bit as if never stopped; on another, its
#                  float rounding may differ from there on).
# Without QUEUE_RESULTS the records go to QUEUE_ROOT/results, starting as a copy of the repository's reproduce_curves.json, and
# are copied back by hand to be tabulated and committed:
#
#     cp ~/crmvae_jax_queue/results/reproduce_curves.json experiments/results/
#     python -m experiments.paper.reproduce --collect_only \
#         --data=mst_offline,mst_offline_v2,mst_offline_v3 --root=~/crmvae_jax_queue
#
# Arguments: the renderer version (1 is data set mst_offline, N > 1 mst_offline_vN), the
# phase (experiments/paper/mst_queue.py's PHASES: gate, claim, new_models), and --status
# to see where the queue stands instead of running it:
#
#     QUEUE_RESULTS=experiments/results bash experiments/paper/mst_offline_queue.sh 3 claim --status
#
#   gate   MoPoE (sampled) alone, seed 0, to 4,000 steps: its S<-M, S<-T and S<-M+T must
#          all be at most 0.50 (the paper's SVHN: 0.35 to 0.37) for the claim to run on
#          the version. Version 2 failed it (0.86, 0.96, 0.96); version 3 passed.
#   claim  seed 0 of CRMVAE, MVTCAE and MoPoE to 8,000 steps, budget by budget; the
#          models added since the paper's (CRMVAE and MoPoE with private latents, MMVAE+)
#          seed 0 to 8,000 beside them; then the three to 16,000, their second seed,
#          MVAE and MVTCAE-rescale (one seed), and seed 0 of the three to the surrogate's
#          100 epochs (35,200 steps). One queue, one results file, one set of judges.
#   new_models  only the added models' leg of the claim.
#
# --legs=N,M runs only those legs of the phase (numbered as --status lists them), so that
# two queues can share the phase on two cores (they share the root, the records file is
# updated under a lock, and each run is in one leg only):
#
#     ... mst_offline_queue.sh 3 claim --legs=3,5,6 >> ~/crmvae_jax_queue/queue_a.log 2>&1 &
#     ... mst_offline_queue.sh 3 claim --legs=1,2,4,7 >> ~/crmvae_jax_queue/queue_b.log 2>&1 &
#
# Stop it with `pkill -TERM -f experiments.paper.mst_queue`: the leg in progress saves its
# step, then the queue keeps its judges and carries its runs; commit experiments/results.
set -euo pipefail
if [ "$#" -lt 2 ]; then
  echo "usage: bash experiments/paper/mst_offline_queue.sh VERSION gate|claim|new_models" \
       "[--status] (e.g. 3 claim)" >&2
  exit 2
fi
cd "$(dirname "$0")/../.."
ROOT="${QUEUE_ROOT:-$HOME/crmvae_jax_queue}"
exec python -m experiments.paper.mst_queue --version="$1" --phase="$2" --root="$ROOT" \
    --results="${QUEUE_RESULTS:-$ROOT/results}" "${@:3}"
