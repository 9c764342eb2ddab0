//! End-to-end tests (work in progress).

mod common;
