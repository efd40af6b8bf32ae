# The PyTorch side of the speed comparison, in its own virtual environment, outside the
# project's dependencies (crmvae_jax never imports torch). Source it from the repository
# root; it builds the venv once (a few minutes, ~1 GB) and sets PEER_PY:
#
#   . experiments/peer/setup.sh
#   python -m experiments.tools.benchmark --sections=objectives,networks   # finds $PEER_PY
#
# Pinned: torch 2.14.1 and torchvision 0.29.1 (CPU use), MultiVae 1.0.3 and pythae
# installed without their own pins (MultiVae pins an old torch), and what they import.
# PEER_VENV chooses where the venv goes (default ~/.cache/crmvae_jax/peer-venv).
PEER_VENV="${PEER_VENV:-$HOME/.cache/crmvae_jax/peer-venv}"
if ! "$PEER_VENV/bin/python" -c "import multivae.models, torch" 2>/dev/null; then
  echo "Building the MultiVae venv in $PEER_VENV (once; log: $PEER_VENV.log)"
  mkdir -p "$(dirname "$PEER_VENV")"
  if python3 -m venv "$PEER_VENV" \
      && "$PEER_VENV/bin/pip" install -q torch==2.14.1 torchvision==0.29.1 dataclasses imageio \
      && "$PEER_VENV/bin/pip" install -q --no-deps multivae==1.0.3 pythae \
      && "$PEER_VENV/bin/pip" install -q cloudpickle numpy "pydantic>=2" scikit-learn scipy \
           tqdm typing_extensions pandas nltk torchmetrics matplotlib \
      > "$PEER_VENV.log" 2>&1; then
    echo "MultiVae venv ready."
  else
    echo "error: building the MultiVae venv failed; see $PEER_VENV.log" >&2
  fi
fi
export PEER_PY="$PEER_VENV/bin/python"
