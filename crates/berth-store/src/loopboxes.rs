//! TODO(owner: see ARCHITECTURE.md work split)
