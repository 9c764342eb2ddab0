//! TODO(owner: see work split)
