"""The networks the methods train: backbones, decoders, discriminators, their ImageNet weights."""
