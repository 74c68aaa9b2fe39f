//! skiff-images (being written).
