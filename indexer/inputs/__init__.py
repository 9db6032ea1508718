"""Reading the inputs: file systems (local and URIs), listing sources, decoding images, sample sets."""
