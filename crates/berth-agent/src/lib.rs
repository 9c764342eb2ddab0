//! The agent (to be written).
