"""mksgn.hw_profiles: hardware energy profiles (YAML) and per-layer energy from measured activity."""
