"""mksgn.deploy: run a converted network in Lava (bit-accurate) or in the fast integer engine."""
