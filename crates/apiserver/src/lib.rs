//! skiff-apiserver (being written).
