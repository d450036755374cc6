"""mksgn.convert: trained student -> Loihi fixed-point network file (.net), ONNX, compatibility report."""
