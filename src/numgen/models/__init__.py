"""The networks: VAE and conditional VAE, their config and loss."""

from numgen.models.vae import CVAE, MODEL_KINDS, VAE, VAEConfig, build_model, vae_loss

__all__ = ["CVAE", "MODEL_KINDS", "VAE", "VAEConfig", "build_model", "vae_loss"]
