"""mksgn.data: skeleton datasets (NTU RGB+D 60/120, NW-UCLA), preprocessing, modalities, synthetic data.

Modules (import what you need; only ``dataset`` imports torch):
    layouts      Layout, NTU25, UCLA20, get_layout: joints, bones, centre joint, GCN partitions
    ntu, ucla    sample names, benchmark splits, file parsers/writers (strict; SkeletonFileError)
    preprocess   denoising, actor assembly, centring, crop-resize, rotation (pure functions)
    modalities   joint / bone / joint_motion / bone_motion on (C, T, V, M) arrays
    prepare      raw files -> PREPARED/<benchmark>/{split}_{data.npy,label.npy,meta.json}, info.json
    dataset      SkeletonDataset over a prepared benchmark directory
    synth        synthetic actions written as real .skeleton / json files
    cli          ``mksgn data synth`` and ``mksgn data prepare``
"""
