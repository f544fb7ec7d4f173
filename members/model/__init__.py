"""The model side: the member spec and its presets, the architectures and backbones, the heads' read-outs (regression cuts)."""
