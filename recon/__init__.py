"""recon: data reconstruction from trained parameters (Iurada, Bombari, Tommasi, Mondelli,
"A Law of Data Reconstruction for Random Features (and Beyond)", ICLR 2026).

Three floors: the science at the top (``recon.data``, ``recon.models``, ``recon.solver``,
...), one module per book chapter in ``recon.chapters``, and the machinery that builds the
book in ``recon.book``. Importing ``recon`` changes no JAX setting; precision is chosen
explicitly (:mod:`recon.precision`).
"""

__version__ = "0.1.0"
