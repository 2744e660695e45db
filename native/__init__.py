"""rctc's C backends: the C kernel library, the code generator and the host loader (``rctc.native``)."""
