"""TAVDiffusion, the TAVGBench paper's baseline: text to audio and video, generated jointly.

Modules: ``config`` (``paper`` and ``tiny`` presets), ``components`` (diffusers/transformers
parts), ``mel`` (AudioLDM's mel front end), ``bridge`` (cross-modal cross-attention), ``eas``
(the EAS contrastive loss), ``model`` (the two-stream denoiser and the codecs), ``data``
(webdataset shards), ``train`` (accelerate trainer), ``checkpoint``, ``pipeline`` (joint DDIM).
Nothing is imported here, so that ``mel`` and ``config`` work without the ``[baselines]`` extra.
"""
