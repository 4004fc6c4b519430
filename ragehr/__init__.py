"""ragehr: retrieval-augmented question answering over a patient's EHR.

``import ragehr`` stays light: no torch, faiss or llama-index until a function that needs them
is called.
"""

__version__ = "0.1.0"
