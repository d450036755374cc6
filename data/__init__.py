"""mksgn.data: skeleton datasets (NTU RGB+D 60/120, NW-UCLA), preprocessing, modalities, synthetic data."""
