"""scripts/export_stylegan.py's parts: StyleGAN2/3 (official pickles or a plain module) → zoom's generator contract."""
