//! Every integration test of the local API's crate, in one test binary: each binary links the AWS SDK, so
//! one binary instead of one per file saves its link time and tens of MB of disk per file. A file in
//! tests/ that is not a module here would never run: infra/scripts/check-test-targets.py fails on one.

mod common;

mod abuse;
mod bad_input;
mod blackbox;
mod catalogue_and_credits;
mod characters;
mod deployed_wiring;
mod generation;
mod pushes;
mod template;
