"""Data sets as in-memory arrays (SPEC.md section 3)."""

from crmvae_jax.data.base import DataUnavailableError, MultimodalDataset
