"""mksgn.train: the GCN teacher, the MK-SGN spiking student, distillation and training loops."""
