"""mksgn.convert: trained student -> Loihi network file (.net), ONNX, compatibility report."""
