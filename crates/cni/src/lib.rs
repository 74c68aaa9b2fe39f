//! skiff-cni (being written).
