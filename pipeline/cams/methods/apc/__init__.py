"""APC (adaptive-K pooling with patch contrastive learning): a single-stage ViT patch classifier (work in progress)."""
