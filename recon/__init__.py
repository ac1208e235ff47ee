"""recon: data reconstruction from trained parameters (Iurada, Bombari, Tommasi, Mondelli,
"A Law of Data Reconstruction for Random Features (and Beyond)", ICLR 2026).

Importing ``recon`` turns on JAX's 64-bit mode so the Gram solves can run in float64; every
large array is still created in float32 explicitly.
"""

import jax

jax.config.update("jax_enable_x64", True)

__version__ = "0.1.0"
